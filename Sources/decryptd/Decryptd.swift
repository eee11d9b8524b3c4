import ArgumentParser

struct Decryptd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decryptd",
        abstract: "Decrypts WeChat Mini Program phone-number payloads from Kafka into PostgreSQL.",
        discussion: """
            Jobs arrive on Kafka: encrypted jobs (openid, encryptedData, iv), for which decryptd looks up \
            the user's session keys in PostgreSQL, decrypts (AES-128-CBC, PKCS#7) and verifies the watermark \
            appid, and code jobs (openid, code), which it exchanges once each with WeChat's phone-number \
            API. It upserts members and dead-letters every failure with a stable reason code. Every option also reads an environment \
            variable; flags win. Exit codes: 0 success, 1 runtime failure, 2 bad usage or configuration.
            """,
        version: "0.1.0 (\(Allocator.description))",
        subcommands: [
            RunCommand.self, MigrateCommand.self, ReprocessCommand.self, ReportCommand.self, ParkedCommand.self,
            DevBrokerCommand.self, DevWeChatCommand.self, LoadgenCommand.self, DecryptCommand.self,
        ]
    )
}
