/// libFuzzer's entry point for a target's `main`. SwiftPM links an executable target with its
/// entry point named `<Target>_main`, so each target defines that symbol and hands libFuzzer its
/// `LLVMFuzzerTestOneInput` through `LLVMFuzzerRunDriver` (libFuzzer's documented way to be
/// driven from a main of one's own).
public typealias FuzzTestOneInput = @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt

@_silgen_name("LLVMFuzzerRunDriver")
private func llvmFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ testOneInput: FuzzTestOneInput
) -> CInt

/// Runs libFuzzer with the process's arguments over `testOneInput`.
public func runFuzzer(
    _ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?, _ testOneInput: FuzzTestOneInput
) -> CInt {
    var count = argc
    var arguments = argv
    return llvmFuzzerRunDriver(&count, &arguments, testOneInput)
}
