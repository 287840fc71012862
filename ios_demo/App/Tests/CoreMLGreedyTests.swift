import CoreML
import EdgeSLMCore
import XCTest
@testable import EdgeSLMDemo

/// Core ML parity stage 3 ("lowering") on Apple's own runtime: the ios-target demo bundle's .mlpackage, loaded by
/// the app's CoreMLEngine, must reproduce the golden greedy prefix (the first `must_match` tokens) that edgeslm
/// recorded. The bundle path comes from EDGESLM_BUNDLE (xcodebuild passes TEST_RUNNER_EDGESLM_BUNDLE to the test
/// process as EDGESLM_BUNDLE). Runs only on the macOS workflow (simulator, iOS 18+).
final class CoreMLGreedyTests: XCTestCase {
    func testGoldenGreedyPrefixInCoreML() async throws {
        guard #available(iOS 18.0, macOS 15.0, *) else { throw XCTSkip("Core ML states need iOS 18 / macOS 15") }
        guard let path = ProcessInfo.processInfo.environment["EDGESLM_BUNDLE"], !path.isEmpty else {
            throw NSError(domain: "CoreMLGreedyTests", code: 1, userInfo: [NSLocalizedDescriptionKey:
                "set TEST_RUNNER_EDGESLM_BUNDLE to an ios-target bundle (`edgeslm export demo --target ios`)"])
        }
        let bundle = try SLMBundle.open(URL(fileURLWithPath: path))
        let artifact = try bundle.choose(available: ["coreml"])
        try bundle.verify(artifact)
        let golden = try bundle.readGolden()
        let entry = try XCTUnwrap((golden["greedy"] as? [[String: Any]])?.first { ($0["artifact"] as? String) == artifact.name },
                                  "golden.json has no greedy entry for \(artifact.name)")
        let promptIds = try XCTUnwrap(entry["prompt_ids"] as? [Int])
        let mustMatch = try XCTUnwrap(entry["must_match"] as? Int)
        guard let tokens = entry["tokens"] as? [Int] else {
            // exported where Core ML could not run: nothing recorded to compare with
            throw XCTSkip("golden greedy tokens for \(artifact.name) are null: \(entry["reason"] ?? "")")
        }
        XCTAssertGreaterThan(mustMatch, 0, "must_match is 0: the golden run had a near-tie at its first token")

        let engine = CoreMLEngine(computeUnits: .cpuOnly)  // the simulator runs Core ML on the CPU
        try await engine.load(bundle: bundle, artifact: artifact)
        // the prompt ids golden.json recorded, and the tokenizer's own encoding of the prompt agree
        let settings = try bundle.settings(for: artifact).greedy()
        let encoded = try engine.encode(try XCTUnwrap(entry["prompt"] as? String), settings: settings)
        XCTAssertEqual(promptIds, encoded, "swift-transformers' encoding of the golden prompt")
        var greedy = settings
        greedy.values["max_new_tokens"] = .int(tokens.count)
        let got = try engine.generateIds(promptIds, settings: greedy)
        XCTAssertGreaterThanOrEqual(got.count, mustMatch)
        XCTAssertEqual(Array(tokens.prefix(mustMatch)), Array(got.prefix(mustMatch)),
                       "greedy prefix in Core ML (\(artifact.name)) vs golden.json; full golden \(tokens), got \(got)")
        // and streamed as text through the app's path
        var text = ""
        let stats = try engine.generate(prompt: try XCTUnwrap(entry["prompt"] as? String), settings: greedy) { text += $0 }
        XCTAssertEqual(Array(tokens.prefix(mustMatch)), Array(stats.tokenIds.prefix(mustMatch)))
        XCTAssertFalse(text.isEmpty)
    }
}
