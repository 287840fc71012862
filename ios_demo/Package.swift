// swift-tools-version:5.9
// EdgeSLMCore: the edgeslm bundle contract (docs/apps.md) in Swift, Foundation + CryptoKit only.
// Tests read a bundle written by `edgeslm export` from the environment variable EDGESLM_BUNDLE:
//   EDGESLM_BUNDLE=/path/to/bundle swift test --package-path ios_demo
import PackageDescription

let package = Package(
    name: "EdgeSLMCore",
    platforms: [.iOS(.v17), .macOS(.v14)],
    products: [
        .library(name: "EdgeSLMCore", targets: ["EdgeSLMCore"]),
    ],
    targets: [
        .target(name: "EdgeSLMCore", path: "Sources/EdgeSLMCore"),
        .testTarget(name: "EdgeSLMCoreTests", dependencies: ["EdgeSLMCore"], path: "Tests/EdgeSLMCoreTests"),
    ]
)
