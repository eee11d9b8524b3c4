import ArgumentParser

struct Decryptd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decryptd",
        abstract: "Decrypts WeChat Mini Program phone-number payloads from Kafka into PostgreSQL.",
        discussion: """
        Jobs (openid, encryptedData, iv) arrive on Kafka; decryptd looks up the user's session keys in \
        PostgreSQL, decrypts (AES-128-CBC, PKCS#7), verifies the watermark appid, upserts members, and \
        dead-letters every failure with a stable reason code. Every option also reads an environment \
        variable; flags win. Exit codes: 0 success, 1 runtime failure, 2 bad usage or configuration.
        """,
        version: "0.1.0 (\(Allocator.description))",
        subcommands: [
            RunCommand.self, MigrateCommand.self, ReprocessCommand.self, ReportCommand.self,
            DevBrokerCommand.self, LoadgenCommand.self, DecryptCommand.self,
        ]
    )
}
