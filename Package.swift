// swift-tools-version:6.0
// SwiftPS: a parameter server for data-parallel training on CPU clusters.
//
// The targets are layered bottom-up; a module only depends on the ones above it in this list.
//
//   COpenBLAS      system library: Debian's OpenBLAS (cblas.h), nothing else
//   CZlib          system library: zlib, only for gzip-compressed IDX files
//   COpenSSL       system library: Debian's OpenSSL 3 (libcrypto for HMAC-SHA256 and random nonces, libssl for TLS)
//   CCRC32C        C: SSE4.2 CRC32 for PSCheckpoint's CRC-32C, one function behind a CPUID check
//                  (Swift reaches the instruction only with the whole module built for SSE4.2)
//   CFusedUpdate   C: AVX2 builds of PSMath's hot loops (optimizers, the BSP mean with SGD, non-finite check, byte
//                  pixels), behind a CPUID check (same reason); the cache-line touch of a batch gather
//   PSWire         wire protocol v1: frames and messages as bytes; never touches a socket
//   PSSecurity     the only Swift module importing OpenSSL: the handshake's HMAC-SHA256, nonces, constant-time
//                  compare; TLS contexts and the TLS stream (a PSPosix SocketLayer)
//   CGlibcGNU      system library: a header declaring sync_file_range (GNU-only in glibc's headers)
//   PSPosix        the only module that calls Glibc for sockets, signals, processes and clocks
//   PSLog          the logger: one key=value line per event on stderr, so that any layer can log
//   PSHTTP         a small HTTP/1.1 server for the observability endpoints: pure request parser, bounded server
//   PSMetrics      pure: Prometheus metric families, histograms and the text exposition format
//   PSPlot         pure: SVG line charts, metrics-file parsing, the Amdahl fit (psctl plot, psbench scale)
//   PSCLI          argument parsing and help in swift-argument-parser's conventions
//   PSMath         the only Swift file importing OpenBLAS; splitmix64, initialisers, optimizers
//   PSModel        models (softmax, linear, MLP): forward and backward with sgemm
//   PSCheckpoint   the checkpoint format: .npy files, CRC32C, manifest, atomic directory writes
//   PSData         data sets (IDX, CSV, LIBSVM, npy, digits, synthetic) and the global data order
//   PSCoordinator  pure state machines: membership, BSP barrier, SSP bound, checkpoint schedule
//   PSTransport    framed connections: PSWire frames over PSPosix sockets, copy-free
//   PSServer       shards, the coordinator shell, connection handling
//   PSClient       the client library workers (and users) call: push / pull / pushPull handles
//   PSTraining     the worker agent: join, load data, pull -> gradient -> push
//   psserver, psworker, psctl, psbench: thin executables
//   psexample      a user's own model (an autoencoder) through the SwiftPS library product
//   PSTestSupport, pstsan-probe (under Tests/): test helpers; the probe is a deliberate race for `make tsan`
import PackageDescription

let package = Package(
    name: "SwiftPS",
    products: [
        .executable(name: "psserver", targets: ["psserver"]),
        .executable(name: "psworker", targets: ["psworker"]),
        .executable(name: "psctl", targets: ["psctl"]),
        .executable(name: "psbench", targets: ["psbench"]),
        .executable(name: "psexample", targets: ["psexample"]),
        .library(name: "PSClient", targets: ["PSClient"]),
        // The worker agent as a library: a model protocol (PSModel), data sets (PSData), BLAS and initialisers
        // (PSMath) and the worker loop (PSTraining) that trains a user's model on a SwiftPS job.
        .library(name: "SwiftPS", targets: ["PSTraining", "PSModel", "PSData", "PSMath"]),
    ],
    targets: [
        .systemLibrary(
            name: "COpenBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        .target(name: "PSSecurity", dependencies: ["COpenSSL", "PSPosix"]),
        .target(name: "PSWire"),
        // Declares sync_file_range, which Swift's Glibc module (built without _GNU_SOURCE) does not.
        .systemLibrary(name: "CGlibcGNU"),
        .target(name: "PSPosix", dependencies: ["CGlibcGNU"]),
        .target(name: "PSLog", dependencies: ["PSPosix"]),
        .target(name: "PSHTTP", dependencies: ["PSPosix"]),
        .target(name: "PSMetrics"),
        .target(name: "PSPlot"),
        .target(name: "PSCLI"),
        // -fno-math-errno: Float.squareRoot() goes through a C inline shim that Clang otherwise compiles to
        // sqrtss plus an errno-setting sqrtf call, which keeps the fused optimizer loops scalar; without errno it
        // is llvm.sqrt and they vectorise (sqrtps/divps). Results are IEEE sqrt either way; nothing reads errno.
        .target(
            name: "PSMath", dependencies: ["COpenBLAS", "CFusedUpdate"],
            swiftSettings: [.unsafeFlags(["-Xcc", "-fno-math-errno"])]),
        // Bitwise the Swift loops: no FMA contraction (Clang contracts a * b + c by default), IEEE sqrt without errno.
        .target(name: "CFusedUpdate", cSettings: [.unsafeFlags(["-ffp-contract=off", "-fno-math-errno"])]),
        .target(name: "PSModel", dependencies: ["PSMath", "PSData"]),
        .target(
            name: "PSData", dependencies: ["PSMath", "PSPosix", "PSCheckpoint", "CZlib"],
            resources: [.copy("Resources/digits")]),
        .target(name: "PSCoordinator"),
        .target(name: "CCRC32C"),
        .target(name: "PSCheckpoint", dependencies: ["PSPosix", "CCRC32C"]),
        .target(name: "PSTransport", dependencies: ["PSWire", "PSPosix", "PSSecurity"]),
        .target(
            name: "PSServer",
            dependencies: [
                "PSWire", "PSPosix", "PSLog", "PSTransport", "PSMath", "PSCoordinator", "PSCheckpoint", "PSHTTP",
                "PSMetrics", "PSSecurity",
            ]
        ),
        .target(name: "PSClient", dependencies: ["PSWire", "PSPosix", "PSTransport", "PSSecurity"]),
        .target(
            name: "PSTraining",
            dependencies: ["PSClient", "PSWire", "PSPosix", "PSLog", "PSMath", "PSModel", "PSData", "PSSecurity"]
        ),
        .executableTarget(
            name: "psserver",
            dependencies: [
                "PSServer", "PSTraining", "PSLog", "PSCoordinator", "PSData", "PSMath", "PSCLI", "PSPosix",
                "PSSecurity", "PSWire",
            ]
        ),
        .executableTarget(name: "psworker", dependencies: ["PSTraining", "PSLog", "PSCLI", "PSPosix", "PSSecurity"]),
        // The example of the README's "Your own model": uses only the SwiftPS library product's modules.
        .executableTarget(name: "psexample", dependencies: ["PSTraining", "PSModel", "PSMath"]),
        .executableTarget(
            name: "psctl",
            dependencies: [
                "PSClient", "PSWire", "PSTransport", "PSCLI", "PSPosix", "PSCheckpoint", "PSPlot", "PSSecurity",
            ]
        ),
        .executableTarget(
            name: "psbench",
            dependencies: [
                "PSWire", "PSPosix", "PSLog", "PSTransport", "PSCLI", "PSMath", "PSModel", "PSData", "PSServer",
                "PSClient", "PSCheckpoint", "PSTraining", "PSCoordinator", "PSPlot", "PSSecurity",
            ]
        ),
        .target(name: "PSTestSupport", dependencies: ["PSPosix", "PSWire"], path: "Tests/PSTestSupport"),
        // Test-only: a deliberate data race that proves a `make tsan` build is sanitized (ThreadSanitizerTests).
        .executableTarget(name: "pstsan-probe", dependencies: ["PSPosix"], path: "Tests/PSTSanProbe"),
        .testTarget(name: "PSWireTests", dependencies: ["PSWire", "PSTestSupport", "PSSecurity"]),
        .testTarget(name: "PSPosixTests", dependencies: ["PSPosix", "PSTestSupport"]),
        .testTarget(name: "PSCLITests", dependencies: ["PSCLI", "PSTestSupport"]),
        .testTarget(name: "PSHTTPTests", dependencies: ["PSHTTP", "PSPosix", "PSTestSupport"]),
        .testTarget(name: "PSMetricsTests", dependencies: ["PSMetrics", "PSTestSupport"]),
        .testTarget(name: "PSPlotTests", dependencies: ["PSPlot", "PSTestSupport"]),
        .testTarget(name: "PSMathTests", dependencies: ["PSMath", "PSTestSupport"]),
        .testTarget(name: "PSModelTests", dependencies: ["PSModel", "PSMath", "PSData", "PSTestSupport"]),
        .testTarget(name: "PSDataTests", dependencies: ["PSData", "PSMath", "PSPosix", "PSTestSupport"]),
        .testTarget(name: "PSCoordinatorTests", dependencies: ["PSCoordinator", "PSTestSupport"]),
        .testTarget(name: "PSCheckpointTests", dependencies: ["PSCheckpoint", "PSTestSupport"]),
        .testTarget(
            name: "PSTransportTests",
            dependencies: ["PSTransport", "PSWire", "PSPosix", "PSTestSupport"]
        ),
        .testTarget(
            name: "PSServerTests",
            dependencies: [
                "PSServer", "PSClient", "PSWire", "PSPosix", "PSLog", "PSTransport", "PSMath", "PSTestSupport",
                "PSCoordinator", "PSCheckpoint", "PSSecurity",
            ]
        ),
        .testTarget(
            name: "PSTrainingTests",
            dependencies: [
                "PSTraining", "PSServer", "PSClient", "PSModel", "PSData", "PSMath", "PSWire", "PSPosix", "PSLog",
                "PSCoordinator",
            ]
        ),
        .testTarget(
            name: "PSClusterTests",
            dependencies: [
                "PSClient", "PSWire", "PSPosix", "PSTransport", "PSCheckpoint", "PSTestSupport", "PSSecurity",
            ]
        ),
    ]
)
