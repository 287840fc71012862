import Foundation

/// The chat template in the form an app without Jinja applies (manifest `app.chat`, docs/apps.md):
/// prompt = (first message is system ? system.prefix + content + system.suffix : begin), then
/// ROLE.prefix + content + ROLE.suffix for every other message, then `generation_prompt` when the app wants the
/// reply, else `end` ("" when absent). With `trim_content` (Jinja `| trim`) each content is first stripped as
/// Python's `str.strip()` does (`pythonStrip`). The result is tokenized without adding special tokens.
public struct ChatTemplate: Sendable {
    public static let simple = "simple"
    public static let none = "none"

    /// "simple" (rendered by `render`) or "none" (see `reason`).
    public let kind: String
    public let reason: String?
    /// The model's original Jinja template, kept for reference.
    public let jinja: String?
    public let systemSupported: Bool
    public let trimContent: Bool
    private let begin: String
    private let roles: [String: (prefix: String, suffix: String)]
    private let generationPrompt: String
    private let end: String

    /// A template from the JSON of a manifest's `app.chat` object.
    public init(json: Data) throws {
        let c: ChatJSON
        do {
            c = try JSONDecoder().decode(ChatJSON.self, from: json)
        } catch let e as DecodingError {
            let err = manifestError(e)
            throw BundleError(err.problem.replacingOccurrences(of: "top level.", with: "app.chat.")
                .replacingOccurrences(of: "manifest.json: ", with: "manifest.json: app.chat: "), fix: err.fix)
        }
        try self.init(c)
    }

    init(_ c: ChatJSON) throws {
        kind = c.kind
        reason = c.reason
        jinja = c.jinja
        if c.kind == ChatTemplate.none {
            systemSupported = false
            trimContent = false
            begin = ""
            roles = [:]
            generationPrompt = ""
            end = ""
            return
        }
        if c.kind != ChatTemplate.simple {
            throw BundleError("manifest.json: app.chat.kind \"\(c.kind)\" is not one this app knows (simple, none)",
                              fix: "update the app, or re-export the bundle with an edgeslm writing schema 1.x")
        }
        guard let system = c.system else { throw missing("app.chat", "system", "an object") }
        guard let user = c.user else { throw missing("app.chat", "user", "an object") }
        guard let assistant = c.assistant else { throw missing("app.chat", "assistant", "an object") }
        guard let gp = c.generation_prompt else { throw missing("app.chat", "generation_prompt", "a string") }
        var r: [String: (prefix: String, suffix: String)] = ["user": (user.prefix, user.suffix),
                                                             "assistant": (assistant.prefix, assistant.suffix)]
        if system.supported {
            guard let p = system.prefix else { throw missing("app.chat.system", "prefix", "a string") }
            guard let s = system.suffix else { throw missing("app.chat.system", "suffix", "a string") }
            r["system"] = (p, s)
        }
        systemSupported = system.supported
        trimContent = c.trim_content ?? false
        begin = c.begin ?? ""
        roles = r
        generationPrompt = gp
        end = c.end ?? ""
    }

    /// Renders `messages` by the rule above. Refuses (BundleError) when the model has no simple template, a system
    /// message the template does not support, a system message after the first, an unknown role, or no messages.
    public func render(_ messages: [Message], addGenerationPrompt: Bool) throws -> String {
        if kind == ChatTemplate.none {
            throw BundleError("this model has no chat template the app can apply: \(reason ?? "the bundle gives no reason")",
                              fix: "send a raw prompt (completion), or export a model with a chat template")
        }
        if messages.isEmpty { throw BundleError("no messages to render", fix: "send at least one message") }
        var out = ""
        for (i, m) in messages.enumerated() {
            if m.role == "system" {
                if !systemSupported {
                    throw BundleError("this model's chat template does not support a system message",
                                      fix: "leave the system prompt empty, or put its text into the first user message")
                }
                if i != 0 {
                    throw BundleError("a system message is supported only as the first message (message \(i + 1) is one)",
                                      fix: "put the system prompt first")
                }
            } else if i == 0 {
                out += begin
            }
            guard let role = roles[m.role] else {
                throw BundleError("unknown chat role \"\(m.role)\" (message \(i + 1))", fix: "use system, user or assistant")
            }
            out += role.prefix + (trimContent ? pythonStrip(m.content) : m.content) + role.suffix
        }
        out += addGenerationPrompt ? generationPrompt : end
        return out
    }
}

/// `s` without leading and trailing whitespace as Python's `str.strip()` (and so Jinja's `trim`) defines it, by
/// code point: Swift's `trimmingCharacters(in: .whitespacesAndNewlines)` uses another set.
public func pythonStrip(_ s: String) -> String {
    func ws(_ c: Unicode.Scalar) -> Bool {
        switch c.value {
        case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000:
            return true
        default:
            return false
        }
    }
    let u = Array(s.unicodeScalars)
    var a = 0
    var b = u.count
    while a < b && ws(u[a]) { a += 1 }
    while b > a && ws(u[b - 1]) { b -= 1 }
    var view = String.UnicodeScalarView()
    view.append(contentsOf: u[a..<b])
    return String(view)
}
