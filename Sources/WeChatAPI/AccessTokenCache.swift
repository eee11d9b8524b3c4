public import Foundation
import Locks

/// An access token and when it stops being used.
public struct AccessToken: Sendable, Hashable, CustomStringConvertible {
    public var value: String
    /// Renew from this moment on: a fifth of the lifetime WeChat gave (at most 5 minutes) before
    /// it ends, so calls never race the expiry, and a token fetched late in its life (the stable
    /// token keeps its remaining time) is still used for most of what is left.
    public var renewAt: Date

    public init(value: String, expiresIn: TimeInterval, fetchedAt: Date = Date()) {
        self.value = value
        renewAt = fetchedAt.addingTimeInterval(expiresIn - min(300, expiresIn / 5))
    }

    /// Never the token itself.
    public var description: String { "access token (renew at \(renewAt))" }
}

/// Access tokens per appid, shared by every exchange of this process.
///
/// Calls for one appid that find no usable token wait on one fetch, not one each; a token that
/// WeChat calls invalid is dropped only if it is still the cached one, so a burst of exchanges that
/// all held the old token causes one fetch. The stable token is the same for every caller (SPEC), so
/// workers never invalidate each other's; this cache never asks for `force_refresh`.
public final class AccessTokenCache: Sendable {
    public typealias Fetch = @Sendable (_ appid: String) async throws -> AccessToken

    private struct Entry {
        var token: AccessToken?
        var fetch: Task<AccessToken, any Error>?
        var fetchID = 0
    }

    private let entries = Mutex<[String: Entry]>([:])
    private let fetch: Fetch
    private let now: @Sendable () -> Date

    public init(now: @escaping @Sendable () -> Date = { Date() }, fetch: @escaping Fetch) {
        self.fetch = fetch
        self.now = now
    }

    /// A usable token for `appid`: the cached one, or the result of the fetch under way, or of a new one.
    public func token(for appid: String) async throws -> AccessToken {
        let (task, id, cached): (Task<AccessToken, any Error>?, Int, AccessToken?) = entries.withLock { entries in
            var entry = entries[appid] ?? Entry()
            if let token = entry.token, token.renewAt > now() { return (nil, 0, token) }
            if let running = entry.fetch { return (running, entry.fetchID, nil) }
            let fetch = self.fetch
            let task = Task { try await fetch(appid) }
            entry.fetch = task
            entry.fetchID += 1
            entries[appid] = entry
            return (task, entry.fetchID, nil)
        }
        if let cached { return cached }
        do {
            let token = try await task!.value
            entries.withLock { entries in
                guard entries[appid]?.fetchID == id, entries[appid]?.fetch != nil else { return }
                entries[appid]?.token = token
                entries[appid]?.fetch = nil
            }
            return token
        } catch {
            entries.withLock { entries in
                if entries[appid]?.fetchID == id { entries[appid]?.fetch = nil }
            }
            throw error
        }
    }

    /// WeChat called `token` invalid or expired: it is dropped if it is still the cached one for
    /// `appid` (a newer one is kept).
    public func invalidate(_ token: String, for appid: String) {
        entries.withLock { entries in
            if entries[appid]?.token?.value == token { entries[appid]?.token = nil }
        }
    }
}
