import Foundation
import XCTest
@testable import EdgeSLMCore

/// The bundle under test: environment variable EDGESLM_BUNDLE (a folder written by `edgeslm export`, with golden.json).
enum TestBundles {
    static var dir: URL {
        get throws {
            guard let p = ProcessInfo.processInfo.environment["EDGESLM_BUNDLE"], !p.isEmpty else {
                // A missing bundle fails: a skipped golden test would pass silently.
                throw NSError(domain: "EdgeSLMCoreTests", code: 1, userInfo: [NSLocalizedDescriptionKey:
                    "set EDGESLM_BUNDLE=<bundle folder written by `edgeslm export`> (the macOS workflow does)"])
            }
            var isDir: ObjCBool = false
            XCTAssertTrue(FileManager.default.fileExists(atPath: p, isDirectory: &isDir) && isDir.boolValue,
                          "EDGESLM_BUNDLE=\(p) is not a folder")
            return URL(fileURLWithPath: p)
        }
    }

    static func open() throws -> SLMBundle { try SLMBundle.open(try dir) }

    /// A private copy of the bundle in a new temp folder.
    static func copy() throws -> URL {
        let dst = FileManager.default.temporaryDirectory.appendingPathComponent("edgeslm-bundle-\(UUID().uuidString)")
        try FileManager.default.copyItem(at: try dir, to: dst)
        return dst
    }

    static func manifest(_ d: URL) throws -> [String: Any] {
        let data = try Data(contentsOf: d.appendingPathComponent(SLMBundle.manifestName))
        return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    static func writeManifest(_ d: URL, _ m: [String: Any]) throws {
        let data = try JSONSerialization.data(withJSONObject: m, options: [.prettyPrinted])
        try data.write(to: d.appendingPathComponent(SLMBundle.manifestName))
    }

    static func golden() throws -> [String: Any] { try open().readGolden() }
}

/// `root` with the value at `path` (string keys and array indices) set to `value` (nil removes it).
func setting(_ root: Any, _ path: [Any], _ value: Any?) -> Any {
    guard let head = path.first else { return value as Any }
    let rest = Array(path.dropFirst())
    if let i = head as? Int, var a = root as? [Any] {
        a[i] = setting(a[i], rest, value)
        return a
    }
    var d = (root as? [String: Any]) ?? [:]
    let key = head as! String
    if rest.isEmpty && value == nil { d.removeValue(forKey: key) } else { d[key] = setting(d[key] as Any, rest, value) }
    return d
}

/// A copy of the bundle whose manifest has these edits (path → value; nil removes; NSNull() writes JSON null).
func mutated(_ edits: [([Any], Any?)]) throws -> URL {
    let d = try TestBundles.copy()
    var m: Any = try TestBundles.manifest(d)
    for (path, value) in edits { m = setting(m, path, value) }
    try TestBundles.writeManifest(d, m as! [String: Any])
    return d
}

/// Runs `block`, which must throw a BundleError, and returns it.
func refused(_ block: () throws -> Void, file: StaticString = #filePath, line: UInt = #line) -> BundleError {
    do {
        try block()
    } catch let e as BundleError {
        return e
    } catch {
        XCTFail("expected a BundleError, got \(error)", file: file, line: line)
        return BundleError("", fix: "")
    }
    XCTFail("expected a BundleError, got none", file: file, line: line)
    return BundleError("", fix: "")
}

func assertMentions(_ e: BundleError, _ words: String..., file: StaticString = #filePath, line: UInt = #line) {
    for w in words { XCTAssertTrue(e.description.contains(w), "'\(e.description)' should mention '\(w)'", file: file, line: line) }
    XCTAssertFalse(e.fix.trimmingCharacters(in: .whitespaces).isEmpty, "no fix given", file: file, line: line)
}

func objects(_ v: Any?) -> [[String: Any]] { (v as? [Any])?.compactMap { $0 as? [String: Any] } ?? [] }

func byteArray(_ v: Any?) -> [UInt8] { ((v as? [Any]) ?? []).map { UInt8(truncating: $0 as! NSNumber) } }
