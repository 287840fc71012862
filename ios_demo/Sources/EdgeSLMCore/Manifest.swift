import Foundation

// manifest.json as Codable types. Strict on what an app needs (a missing or mistyped field is refused, naming its
// place, e.g. "artifacts[0].load.runtime"); unknown fields of a newer 1.x manifest are ignored, since Decodable
// only reads the keys it declares.

/// Any JSON value (for `app.generation` and artifact `metadata`, whose keys vary).
public enum JSONValue: Decodable, Equatable, Sendable {
    case null, bool(Bool), int(Int), double(Double), string(String), array([JSONValue]), object([String: JSONValue])

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let i = try? c.decode(Int.self) { self = .int(i) }
        else if let d = try? c.decode(Double.self) { self = .double(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    public var number: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }
    public var bool: Bool? { if case .bool(let b) = self { return b }; return nil }
    public var string: String? { if case .string(let s) = self { return s }; return nil }
}

struct FileJSON: Decodable {
    let file: String
    let bytes: Int64
    let sha256: String
}

/// An I/O name as an artifact records it: a string (ONNX) or an object with `name` (Core ML).
public struct IOName: Decodable, Equatable, Sendable {
    public let name: String
    private enum K: String, CodingKey { case name }
    public init(from decoder: Decoder) throws {
        if let s = try? decoder.singleValueContainer().decode(String.self) { name = s; return }
        name = try decoder.container(keyedBy: K.self).decode(String.self, forKey: .name)
    }
}

struct LoadJSON: Decodable {
    let path: String
    let runtime: String
    let tokenizer: String
    let runtime_version: String?
    let min_runtime_version: String?
}

struct ArtifactJSON: Decodable {
    let file: String
    let bytes: Int64
    let sha256: String
    let files: [FileJSON]?
    let package: String?
    let backend: String
    let parity: String
    let recipe: String?
    let role: String?
    let load: LoadJSON
    let inputs: [IOName]?
    let outputs: [IOName]?
    let metadata: [String: JSONValue]?
}

struct TokenizerJSON: Decodable { let files: [FileJSON] }

struct PromptJSON: Decodable {
    let add_bos: Bool
    let bos_id: Int?
    let bos: String?
}

struct StopJSON: Decodable {
    let eos_ids: [Int]
    let strings: [String]
}

struct RoleJSON: Decodable {
    let prefix: String
    let suffix: String
}

struct SystemJSON: Decodable {
    let supported: Bool
    let prefix: String?
    let suffix: String?
}

struct ChatJSON: Decodable {
    let kind: String
    let reason: String?
    let jinja: String?
    let begin: String?
    let system: SystemJSON?
    let user: RoleJSON?
    let assistant: RoleJSON?
    let generation_prompt: String?
    let end: String?
    let trim_content: Bool?
}

struct AppJSON: Decodable {
    let prompt: PromptJSON
    let stop: StopJSON
    let chat: ChatJSON
    let generation: [String: JSONValue]
    let honoured: [String: [String]]
    let golden: FileJSON?
}

struct ModelJSON: Decodable { let id: String? }

struct ManifestJSON: Decodable {
    let schema_version: String
    let kind: String
    let status: String
    let model: ModelJSON?
    let artifacts: [ArtifactJSON]
    let tokenizer: TokenizerJSON
    let reports: [FileJSON]?
    let app: AppJSON
}

/// "artifacts[0].load.runtime" from a decoding error's coding path.
func placeOf(_ path: [CodingKey], _ key: CodingKey? = nil) -> (where: String, key: String) {
    var parts: [String] = []
    for k in path {
        if let i = k.intValue { if parts.isEmpty { parts.append("[\(i)]") } else { parts[parts.count - 1] += "[\(i)]" } }
        else { parts.append(k.stringValue) }
    }
    if let key = key { return (parts.isEmpty ? "top level" : parts.joined(separator: "."), key.stringValue) }
    let last = parts.popLast() ?? "?"
    return (parts.isEmpty ? "top level" : parts.joined(separator: "."), last)
}

func manifestError(_ e: DecodingError) -> BundleError {
    switch e {
    case .keyNotFound(let key, let ctx):
        let p = placeOf(ctx.codingPath, key)
        return missing(p.where, p.key, "present")
    case .valueNotFound(_, let ctx):
        let p = placeOf(ctx.codingPath)
        return missing(p.where, p.key, "a value (it is null)")
    case .typeMismatch(let type, let ctx):
        let p = placeOf(ctx.codingPath)
        return missing(p.where, p.key, "of type \(type)")
    case .dataCorrupted(let ctx):
        return BundleError("manifest.json is not valid JSON (\(ctx.debugDescription))", fix: reexport)
    @unknown default:
        return BundleError("manifest.json could not be read (\(e))", fix: reexport)
    }
}
