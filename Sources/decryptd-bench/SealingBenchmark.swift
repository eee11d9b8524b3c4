import ArgumentParser
import DevWeChat
import Foundation
import PhoneDecryption
import WeChatAPISecurity

/// `decryptd-bench sealing`: the CPU one code exchange costs the worker in API security mode beside
/// the plain one, on one thread: the plain call's JSON body; sealing a request (AES-256-GCM, then
/// an RSA-2048 PSS signature, the cost to watch); opening an answer (a PSS verification, then
/// AES-GCM). Figures in µs per call, and the share of one core a given rate of sealed calls takes.
struct SealingBenchmark: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sealing", abstract: "CPU per sealed code exchange (sign + verify + AES-GCM) beside the plain one.")

    @Option(help: "Calls timed for each figure.") var calls = 2000
    @Option(help: "A rate of sealed calls per second to express the CPU as a share of cores.") var rate = 2560.0

    func run() throws {
        let app = DevSealedApp.generate(appid: "wx6ede2086ee29a89f")
        let call = SealedCall(keys: app.workerKeys)
        let urlpath = "https://api.weixin.qq.com/wxa/business/getuserphonenumber"
        let now = Int64(Date().timeIntervalSince1970)
        let code = "0-bench-1-0000000000000000"
        // A genuine answer, sealed as dev-wechat seals it.
        let answer = DevGateway.sealAnswer(
            .json(
                status: 200,
                body: #"{"errcode":0,"errmsg":"ok","phone_info":{"phoneNumber":"+86 13800000000","purePhoneNumber":"13800000000","#
                    + #""countryCode":"86","watermark":{"timestamp":1,"appid":"wx6ede2086ee29a89f"}}}"#
            ), app: app, urlpath: urlpath, signer: 0, clock: now)
        guard case .signed(_, let body, let headers) = answer else { throw ValidationError("dev-wechat did not seal") }
        let lowered = Dictionary(uniqueKeysWithValues: headers.map { ($0.key.lowercased(), $0.value) })

        let plain = time {
            var writer = JSONWriter()
            writer.beginObject()
            writer.field("code", code)
            writer.endObject()
            return writer.text.utf8.count
        }
        let seal = time { call.seal(urlpath: urlpath, timestamp: now, parameters: [("code", .string(code))]).body.count }
        let open = time {
            guard case .verified(let plaintext, _) = call.open(urlpath: urlpath, header: { lowered[$0.lowercased()] }, body: body, now: now)
            else { fatalError("the genuine answer did not open") }
            return plaintext.count
        }
        let sealed = seal + open
        print(
            String(
                format:
                    "sealing: plain body %.1f µs; sealed request %.0f µs (AES-GCM + RSA-PSS sign); answer opened %.0f µs (verify + AES-GCM); "
                    + "sealed call %.0f µs CPU = %.2f cores at %.0f calls/s",
                plain * 1e6, seal * 1e6, open * 1e6, sealed * 1e6, sealed * rate, rate))
    }

    /// Seconds of CPU per call of `body` on this thread (wall time of a busy loop; one thread).
    func time(_ body: () -> Int) -> Double {
        var sink = 0
        for _ in 0..<min(calls, 50) { sink &+= body() }  // warm up
        let started = DispatchTime.now()
        for _ in 0..<calls { sink &+= body() }
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e9
        precondition(sink != 0)
        return elapsed / Double(calls)
    }
}
