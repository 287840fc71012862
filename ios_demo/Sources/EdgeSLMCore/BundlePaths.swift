import Foundation

/// Resolves a path named in manifest.json to a file inside the bundle, refusing anything that could reach outside
/// it: absolute paths (POSIX or Windows), a `..` component, a NUL, a symlink anywhere below the bundle folder, or a
/// resolved path outside the bundle's resolved path.
enum BundlePaths {
    static let fix = "the bundle was altered after export: re-export it with `edgeslm export` and copy it again"

    static func isSymlink(_ url: URL) -> Bool {
        // attributesOfItem does not follow a final symlink (lstat)
        guard let attrs = try? FileManager.default.attributesOfItem(atPath: url.path) else { return false }
        return (attrs[.type] as? FileAttributeType) == .typeSymbolicLink
    }

    static func resolve(_ dir: URL, _ name: String, where place: String) throws -> URL {
        func refuse(_ why: String) -> BundleError {
            BundleError("manifest.json: \(place) \"\(name)\" \(why)", fix: fix)
        }
        if name.isEmpty { throw refuse("is empty (every listed path names a file or folder in the bundle)") }
        if name.hasPrefix("/") || name.hasPrefix("\\") || name.range(of: "^[A-Za-z]:", options: .regularExpression) != nil {
            throw refuse("is an absolute path (paths must be relative to the bundle)")
        }
        let parts = name.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "/" || $0 == "\\" }).map(String.init)
        if parts.contains("..") { throw refuse("has a '..' component (paths must stay inside the bundle)") }
        if name.contains("\u{0}") { throw refuse("contains a NUL character") }
        let root = dir.standardizedFileURL.resolvingSymlinksInPath()
        var cur = dir
        var rel: [String] = []
        for p in parts where !p.isEmpty && p != "." {
            cur = cur.appendingPathComponent(p)
            rel.append(p)
            if isSymlink(cur) {
                throw refuse("goes through a symlink (\(rel.joined(separator: "/"))); a bundle holds plain files only")
            }
        }
        let full = dir.appendingPathComponent(name).standardizedFileURL.resolvingSymlinksInPath()
        if full.path != root.path && !full.path.hasPrefix(root.path + "/") {
            throw refuse("resolves outside the bundle (to \(full.path))")
        }
        return full
    }
}
