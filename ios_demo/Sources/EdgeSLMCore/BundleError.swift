import Foundation

/// Why a bundle (or a request against it) is refused, and what the user can do about it. Shown as is on screen.
public struct BundleError: Error, LocalizedError, CustomStringConvertible, Equatable {
    public let problem: String
    public let fix: String

    public init(_ problem: String, fix: String) {
        self.problem = problem
        self.fix = fix
    }

    public var description: String { "\(problem). Fix: \(fix)" }
    public var errorDescription: String? { description }
}

let reexport = "re-export the bundle with `edgeslm export` (manifest schema 1.2 or newer 1.x)"
let copyAgain = "copy the bundle again (Files app, Finder file sharing or `xcrun devicectl device copy to`), or re-export it with `edgeslm export`"

func missing(_ where_: String, _ key: String, _ what: String) -> BundleError {
    BundleError("manifest.json: \(where_).\(key) is missing or not \(what)", fix: reexport)
}
