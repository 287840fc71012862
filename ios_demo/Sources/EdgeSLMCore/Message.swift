/// One chat message: role is "system", "user" or "assistant".
public struct Message: Equatable, Sendable {
    public let role: String
    public let content: String

    public init(_ role: String, _ content: String) {
        self.role = role
        self.content = content
    }
}
