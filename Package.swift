// swift-tools-version:6.0
// SwiftPS: a parameter server for data-parallel training on CPU clusters.
//
// The targets are layered bottom-up; a module only depends on the ones above it in this list.
//
//   COpenBLAS      system library: Debian's OpenBLAS (cblas.h), nothing else
//   CZlib          system library: zlib, only for gzip-compressed IDX files
//   PSWire         wire protocol v1: frames and messages as bytes; never touches a socket
//   PSPosix        the only module that calls Glibc for sockets, signals, processes and clocks
//   PSLog          the logger: one key=value line per event on stderr, so that any layer can log
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
import PackageDescription

let package = Package(
    name: "SwiftPS",
    products: [
        .executable(name: "psserver", targets: ["psserver"]),
        .executable(name: "psworker", targets: ["psworker"]),
        .executable(name: "psctl", targets: ["psctl"]),
        .executable(name: "psbench", targets: ["psbench"]),
        .library(name: "PSClient", targets: ["PSClient"]),
    ],
    targets: [
        .systemLibrary(
            name: "COpenBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .target(name: "PSWire"),
        .target(name: "PSPosix"),
        .target(name: "PSLog", dependencies: ["PSPosix"]),
        .target(name: "PSCLI"),
        // -fno-math-errno: Float.squareRoot() goes through a C inline shim that Clang otherwise compiles to
        // sqrtss plus an errno-setting sqrtf call, which keeps the fused optimizer loops scalar; without errno it
        // is llvm.sqrt and they vectorise (sqrtps/divps). Results are IEEE sqrt either way; nothing reads errno.
        .target(
            name: "PSMath", dependencies: ["COpenBLAS"], swiftSettings: [.unsafeFlags(["-Xcc", "-fno-math-errno"])]),
        .target(name: "PSModel", dependencies: ["PSMath"]),
        .target(
            name: "PSData", dependencies: ["PSMath", "PSCheckpoint", "CZlib"], resources: [.copy("Resources/digits")]),
        .target(name: "PSCoordinator"),
        .target(name: "PSCheckpoint", dependencies: ["PSPosix"]),
        .target(name: "PSTransport", dependencies: ["PSWire", "PSPosix"]),
        .target(
            name: "PSServer",
            dependencies: [
                "PSWire", "PSPosix", "PSLog", "PSTransport", "PSMath", "PSCoordinator", "PSCheckpoint",
            ]
        ),
        .target(name: "PSClient", dependencies: ["PSWire", "PSPosix", "PSTransport"]),
        .target(
            name: "PSTraining",
            dependencies: ["PSClient", "PSWire", "PSPosix", "PSLog", "PSMath", "PSModel", "PSData"]
        ),
        .executableTarget(
            name: "psserver",
            dependencies: [
                "PSServer", "PSTraining", "PSLog", "PSCoordinator", "PSData", "PSMath", "PSCLI", "PSPosix",
            ]
        ),
        .executableTarget(name: "psworker", dependencies: ["PSTraining", "PSLog", "PSCLI", "PSPosix"]),
        .executableTarget(
            name: "psctl",
            dependencies: ["PSClient", "PSWire", "PSTransport", "PSCLI", "PSPosix", "PSCheckpoint"]
        ),
        .executableTarget(
            name: "psbench",
            dependencies: [
                "PSWire", "PSPosix", "PSLog", "PSTransport", "PSCLI", "PSMath", "PSModel", "PSData", "PSServer",
                "PSClient", "PSCheckpoint", "PSTraining", "PSCoordinator",
            ]
        ),
        .target(name: "PSTestSupport", dependencies: ["PSPosix", "PSWire"], path: "Tests/PSTestSupport"),
        .testTarget(name: "PSWireTests", dependencies: ["PSWire", "PSTestSupport"]),
        .testTarget(name: "PSPosixTests", dependencies: ["PSPosix", "PSTestSupport"]),
        .testTarget(name: "PSCLITests", dependencies: ["PSCLI", "PSTestSupport"]),
        .testTarget(name: "PSMathTests", dependencies: ["PSMath", "PSTestSupport"]),
        .testTarget(name: "PSModelTests", dependencies: ["PSModel", "PSMath", "PSTestSupport"]),
        .testTarget(name: "PSDataTests", dependencies: ["PSData", "PSMath", "PSTestSupport"]),
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
                "PSCoordinator",
            ]
        ),
        .testTarget(
            name: "PSClusterTests",
            dependencies: ["PSClient", "PSWire", "PSPosix", "PSCheckpoint", "PSTestSupport"]
        ),
    ]
)
