#if canImport(CJemalloc)
    internal import CJemalloc
#endif

/// The process's memory allocator. decryptd links jemalloc: with glibc's malloc the worker spent
/// about a fifth of its CPU in malloc and free (arena locks, consolidating freed chunks), because
/// a batch's memory is allocated on the threads that fetch and parse it and freed on the ones
/// that write it. See README, Performance.
enum Allocator {
    /// "jemalloc VERSION" when jemalloc serves this process's allocations, else "glibc malloc".
    static var description: String {
        #if canImport(CJemalloc)
            // Allocate something, then ask jemalloc how much this thread allocated through it: more
            // than zero only if malloc really resolves to jemalloc (not merely that it is loaded).
            let probe = [UInt8](repeating: 1, count: 4096)
            var allocated: UInt64 = 0
            var size = MemoryLayout<UInt64>.size
            let status = withExtendedLifetime(probe) { mallctl("thread.allocated", &allocated, &size, nil, 0) }
            var version: UnsafePointer<CChar>?
            var versionSize = MemoryLayout<UnsafePointer<CChar>?>.size
            guard status == 0, allocated > 0, mallctl("version", &version, &versionSize, nil, 0) == 0, let version else {
                return "glibc malloc"
            }
            return "jemalloc " + String(cString: version)
        #else
            return "glibc malloc"  // a sanitizer build: the sanitizer's allocator, in fact
        #endif
    }
}
