// swift-tools-version:6.0
import PackageDescription

// Layers, bottom up (see README "Code map"); every target:
//   CLibCrypto, CLibPQ, CRDKafka, CJemalloc   one system-library target per C library (Debian -dev packages)
//   OpenSSLAES, OpenSSLDigest, OpenSSLRSA     thin bindings over OpenSSL's EVP: AES-128-CBC, AES-256-GCM, SHA-256,
//                                             HMAC, RSA-PSS, PEM keys and X.509 certificates
//   PostgresClient, KafkaClient               bindings over libpq and librdkafka
//   DedicatedThread, LogKeys                  a joinable thread for blocking work; the log metadata keys
//   PhoneDecryption                           the domain: lenient base64, PKCS#7, strict JSON, key fallback. No C imports.
//   WeChatAPISecurity                         WeChat's API security mode: the key file, sealing and opening. No C imports.
//   WeChatAPI                                 WeChat's server API: code exchange, checksession, access tokens (async-http-client)
//   DecryptdStore, EmbedMigrations(+Tool)     the schema's statements; the plugin that embeds migrations/
//   DecryptdWorker                            the pipeline (run, reprocess)
//   MetricsEndpoint                           /metrics, /healthz, /readyz
//   SyntheticLoad                             synthetic load for loadgen, the stand-ins, tests, benchmarks; never the pipeline
//   DevWeChat                                 the local stand-in for WeChat's API
//   decryptd                                  the command-line tool
//   decryptd-bench                            benchmarks that print figures (never timed tests)
//   DecryptdTestSupport                       helpers shared by the test targets

/// Sanitizer builds (scripts/sanitize.sh sets DECRYPTD_SANITIZER) bring their own allocator:
/// jemalloc stays out of them.
let sanitizing = Context.environment["DECRYPTD_SANITIZER"] != nil

/// libFuzzer targets (Fuzz/), built only by scripts/fuzz.sh, which sets DECRYPTD_FUZZ and builds
/// with `-sanitize=fuzzer,address` (libFuzzer brings their `main`).
let fuzzing = Context.environment["DECRYPTD_FUZZ"] != nil
let fuzzTargets: [Target] =
    !fuzzing
    ? []
    : [
        ("FuzzJobValues", ["PhoneDecryption"]), ("FuzzPlaintext", ["PhoneDecryption", "OpenSSLAES"]),
        ("FuzzLenientBase64", ["PhoneDecryption"]), ("FuzzDecryptRequest", ["PhoneDecryption"]),
        ("FuzzWeChatAnswers", ["PhoneDecryption"]), ("FuzzHTTPRequest", ["MetricsEndpoint", "Locks"]),
        ("FuzzDeadLetterHeaders", ["DeadLetterFormat", "KafkaClient", "PhoneDecryption"]),
        ("FuzzSealedAnswers", ["WeChatAPISecurity", "OpenSSLRSA", "PhoneDecryption"]),
    ].map { name, dependencies in
        .executableTarget(name: name, dependencies: (dependencies + ["FuzzDriver"]).map { .target(name: $0) }, path: "Fuzz/\(name)")
    } + [.target(name: "FuzzDriver", path: "Fuzz/FuzzDriver")]

/// The `decryptd` executable links jemalloc as its malloc, except in sanitizer builds.
let allocator: [Target.Dependency] = sanitizing ? [] : ["CJemalloc"]

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "decryptd",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "decryptd", targets: ["decryptd"]),
        .executable(name: "decryptd-bench", targets: ["decryptd-bench"]),
        .library(name: "PhoneDecryption", targets: ["PhoneDecryption"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.0"),
    ],
    targets: [
        // MARK: - C libraries
        .systemLibrary(
            name: "CLibCrypto",
            pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]
        ),
        .systemLibrary(
            name: "CLibPQ",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"])]
        ),
        .systemLibrary(
            name: "CJemalloc",
            pkgConfig: "jemalloc",
            providers: [.apt(["libjemalloc-dev"])]
        ),
        .systemLibrary(
            name: "CRDKafka",
            pkgConfig: "rdkafka",
            providers: [.apt(["librdkafka-dev"])]
        ),

        // MARK: - Bindings
        .target(
            name: "OpenSSLAES",
            dependencies: ["CLibCrypto"],
            swiftSettings: strict
        ),

        .target(
            name: "LogKeys",
            swiftSettings: strict
        ),
        .target(
            name: "DedicatedThread",
            swiftSettings: strict
        ),
        .target(
            name: "KafkaClient",
            dependencies: ["CRDKafka", "DedicatedThread", "LogKeys", "Retries", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        .target(
            name: "PostgresClient",
            dependencies: ["CLibPQ", "Retries"],
            swiftSettings: strict
        ),

        .target(
            name: "OpenSSLRSA",
            dependencies: ["CLibCrypto"],
            swiftSettings: strict
        ),
        .target(
            name: "WeChatAPISecurity",
            dependencies: ["PhoneDecryption", "OpenSSLAES", "OpenSSLRSA"],
            swiftSettings: strict
        ),

        .target(
            name: "OpenSSLDigest",
            dependencies: ["CLibCrypto"],
            swiftSettings: strict
        ),

        // MARK: - WeChat's server API
        .target(
            name: "WeChatAPI",
            dependencies: [
                "PhoneDecryption", "WeChatAPISecurity", "OpenSSLDigest", "LogKeys", "Retries", "Locks",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "DevWeChat",
            dependencies: [
                "PhoneDecryption", "SyntheticLoad", "Locks", "WeChatAPISecurity", "OpenSSLAES", "OpenSSLRSA", "OpenSSLDigest",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),

        .target(
            name: "Locks",
            swiftSettings: strict
        ),
        .target(
            name: "Retries",
            dependencies: ["LogKeys", "Locks", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        // MARK: - Storage
        .target(
            name: "DecryptdStore",
            dependencies: ["PostgresClient", "OpenSSLDigest"],
            swiftSettings: strict,
            plugins: ["EmbedMigrations"]
        ),
        .executableTarget(
            name: "EmbedMigrationsTool",
            swiftSettings: strict
        ),
        .plugin(
            name: "EmbedMigrations",
            capability: .buildTool(),
            dependencies: ["EmbedMigrationsTool"]
        ),

        // MARK: - Domain
        .target(
            name: "PhoneDecryption",
            dependencies: ["OpenSSLAES"],
            swiftSettings: strict
        ),

        // MARK: - The dead-letter format (SPEC's headers), on its own so that it can be fuzzed alone
        .target(name: "DeadLetterFormat", dependencies: ["KafkaClient", "PhoneDecryption"], swiftSettings: strict),

        // MARK: - The worker
        .target(
            name: "DecryptdWorker",
            dependencies: [
                "PhoneDecryption", "DecryptdStore", "KafkaClient", "WeChatAPI", "WeChatAPISecurity", "DedicatedThread",
                "LogKeys", "DeadLetterFormat", "Retries", "Locks",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: strict
        ),

        // MARK: - Synthetic load (loadgen, the stand-ins, tests and benchmarks; never the pipeline)
        .target(
            name: "SyntheticLoad",
            dependencies: ["PhoneDecryption", "OpenSSLAES", "DecryptdStore", "KafkaClient"],
            swiftSettings: strict
        ),

        .target(
            name: "MetricsEndpoint",
            dependencies: [
                "Locks",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),

        // MARK: - Executables
        .executableTarget(
            name: "decryptd",
            dependencies: [
                "PhoneDecryption",
                "Locks",
                "DecryptdStore",
                "PostgresClient",
                "KafkaClient",
                "DecryptdWorker",
                "MetricsEndpoint",
                "DevWeChat",
                "WeChatAPI",
                "WeChatAPISecurity",
                "SyntheticLoad",
                "LogKeys",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ] + allocator,
            swiftSettings: strict
        ),
        .executableTarget(
            name: "decryptd-bench",
            dependencies: [
                "PhoneDecryption",
                "Locks",
                "DecryptdStore",
                "PostgresClient",
                "KafkaClient",
                "CLibCrypto",
                "WeChatAPI",
                "WeChatAPISecurity",
                "DevWeChat",
                "SyntheticLoad",
                "DecryptdWorker",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),

        // MARK: - Tests
        .target(
            name: "DecryptdTestSupport",
            dependencies: ["DecryptdStore", "PostgresClient", .product(name: "Logging", package: "swift-log")],
            path: "Tests/Support",
            swiftSettings: strict
        ),
        .testTarget(
            name: "DecryptdWorkerTests",
            dependencies: [
                "DecryptdWorker", "DecryptdTestSupport", "DecryptdStore", "PostgresClient", "KafkaClient", "PhoneDecryption",
                "DevWeChat", "WeChatAPI", "OpenSSLDigest", "SyntheticLoad", "DeadLetterFormat", "Locks",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "MetricsEndpointTests",
            dependencies: ["MetricsEndpoint", "DecryptdTestSupport", "Locks"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "DecryptdCLITests",
            dependencies: ["DecryptdTestSupport", "decryptd", "DecryptdStore", "PostgresClient"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "KafkaClientTests",
            dependencies: ["KafkaClient", "DecryptdTestSupport", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "WeChatAPITests",
            dependencies: [
                "WeChatAPI", "WeChatAPISecurity", "OpenSSLAES", "OpenSSLRSA", "OpenSSLDigest", "DevWeChat", "PhoneDecryption",
                "DecryptdTestSupport",
                "SyntheticLoad", .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "DecryptdStoreTests",
            dependencies: ["DecryptdStore", "PostgresClient", "DecryptdTestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "PhoneDecryptionTests",
            dependencies: ["PhoneDecryption", "OpenSSLAES", "DecryptdTestSupport", "SyntheticLoad"],
            swiftSettings: strict
        ),
    ] + fuzzTargets,
    swiftLanguageModes: [.v6]
)
