import Foundation
import NIOConcurrencyHelpers
import Testing

@testable import WeChatAPI

@Suite("Access token cache")
struct AccessTokenCacheTests {
    /// Counts fetches and hands out t1, t2, ... after `delay`.
    final class Fetcher: Sendable {
        let count = NIOLockedValueBox(0)
        let expiresIn: TimeInterval
        let delay: UInt64
        let failing = NIOLockedValueBox(false)
        init(expiresIn: TimeInterval = 7200, delay: UInt64 = 50_000_000) { (self.expiresIn, self.delay) = (expiresIn, delay) }
        func fetch(_ appid: String) async throws -> AccessToken {
            let n = count.withLockedValue {
                $0 += 1
                return $0
            }
            try await Task.sleep(nanoseconds: delay)
            if failing.withLockedValue({ $0 }) { throw CancellationError() }
            return AccessToken(value: "\(appid)-t\(n)", expiresIn: expiresIn)
        }
    }

    @Test("concurrent calls for one appid wait on one fetch; another appid has its own")
    func singleFlight() async throws {
        let fetcher = Fetcher()
        let cache = AccessTokenCache { try await fetcher.fetch($0) }
        let tokens = try await withThrowingTaskGroup(of: String.self) { group in
            for index in 0..<100 { group.addTask { try await cache.token(for: index % 10 == 0 ? "b" : "a").value } }
            return try await group.reduce(into: [String]()) { $0.append($1) }
        }
        #expect(fetcher.count.withLockedValue { $0 } == 2)
        #expect(Set(tokens) == ["a-t1", "b-t2"] || Set(tokens) == ["a-t2", "b-t1"])
        #expect(try await cache.token(for: "a").value.hasPrefix("a-"))
        #expect(fetcher.count.withLockedValue { $0 } == 2, "cached")
    }

    @Test("an invalidated token is fetched again once; invalidating an older token keeps the newer")
    func invalidate() async throws {
        let fetcher = Fetcher()
        let cache = AccessTokenCache { try await fetcher.fetch($0) }
        let first = try await cache.token(for: "a").value
        cache.invalidate(first, for: "a")
        let second = try await cache.token(for: "a").value
        #expect(second != first)
        cache.invalidate(first, for: "a")  // a late report about the old token
        #expect(try await cache.token(for: "a").value == second)
        #expect(fetcher.count.withLockedValue { $0 } == 2)
    }

    @Test("a token is renewed before it expires, and a failed fetch is not cached")
    func renewal() async throws {
        let clock = NIOLockedValueBox(Date(timeIntervalSince1970: 1_000_000))
        let fetcher = Fetcher(expiresIn: 100, delay: 1_000_000)
        let cache = AccessTokenCache(now: { clock.withLockedValue { $0 } }, fetch: { try await fetcher.fetch($0) })
        // AccessToken's own clock is the real one: renewAt = real now + 80 s; move the fake clock past it.
        _ = try await cache.token(for: "a")
        clock.withLockedValue { $0 = Date().addingTimeInterval(79) }
        _ = try await cache.token(for: "a")
        #expect(fetcher.count.withLockedValue { $0 } == 1, "still fresh at 79 of 100 s")
        clock.withLockedValue { $0 = Date().addingTimeInterval(81) }
        _ = try await cache.token(for: "a")
        #expect(fetcher.count.withLockedValue { $0 } == 2, "renewed in the last fifth")
        fetcher.failing.withLockedValue { $0 = true }
        clock.withLockedValue { $0 = Date().addingTimeInterval(200) }
        await #expect(throws: (any Error).self) { try await cache.token(for: "a") }
        fetcher.failing.withLockedValue { $0 = false }
        _ = try await cache.token(for: "a")
        #expect(fetcher.count.withLockedValue { $0 } == 4, "the failed fetch was not kept")
    }

    @Test("the renewal margin is a fifth of the lifetime, at most 5 minutes")
    func margin() {
        let now = Date(timeIntervalSince1970: 0)
        #expect(AccessToken(value: "t", expiresIn: 7200, fetchedAt: now).renewAt == Date(timeIntervalSince1970: 6900))
        #expect(AccessToken(value: "t", expiresIn: 300, fetchedAt: now).renewAt == Date(timeIntervalSince1970: 240))
    }
}
