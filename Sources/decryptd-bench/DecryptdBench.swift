import ArgumentParser

@main
struct DecryptdBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decryptd-bench",
        abstract: "Benchmarks that print figures. Build with -c release: swift run -c release decryptd-bench decrypt",
        subcommands: [
            DecryptBenchmark.self, StoreBenchmark.self, ConsumeBenchmark.self, ProduceBenchmark.self, HTTPClientBenchmark.self,
            ParkedBenchmark.self, SealingBenchmark.self,
        ]
    )
}
