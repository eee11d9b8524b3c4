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

    @Test("librdkafka checks a setting at start-up: unknown properties, refused values and decryptd's own settings are problems")
    func problems() {
        #expect(KafkaPropertySetting.problem(key: "fetch.wait.max.ms", value: "50") == nil)
        #expect(KafkaPropertySetting.problem(key: "linger.ms", value: "5") == nil)
        #expect(KafkaPropertySetting.problem(key: "sasl.username", value: "a b") == nil)
        #expect(KafkaPropertySetting.problem(key: "no.such.property", value: "1")?.contains("No such configuration property") == true)
        #expect(KafkaPropertySetting.problem(key: "fetch.wait.max.ms", value: "soon")?.contains("Invalid value") == true)
        #expect(KafkaPropertySetting.problem(key: "enable.auto.commit", value: "true")?.contains("manages") == true)
        #expect(KafkaPropertySetting.problem(key: "enable.auto.offset.store", value: "false")?.contains("manages") == true)
    }
}
