import KafkaClient
import Testing

@Suite("Kafka property settings")
struct KafkaPropertySettingTests {
    @Test("key=value: the key trimmed, the value as given, later = signs kept")
    func parse() {
        #expect(KafkaPropertySetting.parse("fetch.wait.max.ms=50")! == ("fetch.wait.max.ms", "50"))
        #expect(KafkaPropertySetting.parse(" sasl.username =a b")! == ("sasl.username", "a b"))
        #expect(KafkaPropertySetting.parse("sasl.password=x=y=")! == ("sasl.password", "x=y="))
        #expect(KafkaPropertySetting.parse("client.id=")! == ("client.id", ""))
    }

    @Test("no = or nothing before it is not a setting")
    func refused() {
        #expect(KafkaPropertySetting.parse("fetch.wait.max.ms") == nil)
        #expect(KafkaPropertySetting.parse("=50") == nil)
        #expect(KafkaPropertySetting.parse("") == nil)
    }
}
