package dev.edgeslm.core

import java.io.File
import java.nio.file.Files

/**
 * Resolves a path named in manifest.json to a file inside the bundle, refusing anything that could reach
 * outside it: absolute paths (POSIX or Windows), a `..` component, a symlink anywhere below the bundle folder,
 * or a canonical path outside the bundle's canonical path.
 */
internal object BundlePaths {
    private const val FIX = "the bundle was altered after export: re-export it with `edgeslm export` and copy it again"

    fun resolve(dir: File, name: String, where: String): File {
        fun refuse(why: String): Nothing = throw BundleException("manifest.json: $where \"$name\" $why", FIX)
        if (name.isEmpty()) refuse("is empty (every listed path names a file or folder in the bundle)")
        if (name.startsWith("/") || name.startsWith("\\") || Regex("^[A-Za-z]:").containsMatchIn(name))
            refuse("is an absolute path (paths must be relative to the bundle)")
        val parts = name.split('/', '\\')
        if (parts.any { it == ".." }) refuse("has a '..' component (paths must stay inside the bundle)")
        if (name.contains('\u0000')) refuse("contains a NUL character")
        val root = dir.canonicalFile
        var cur = dir
        for (p in parts.filter { it.isNotEmpty() && it != "." }) {
            cur = File(cur, p)
            if (Files.isSymbolicLink(cur.toPath())) refuse("goes through a symlink (${cur.relativeTo(dir)}); a bundle holds plain files only")
        }
        val full = File(dir, name).canonicalFile
        if (full != root && !full.path.startsWith(root.path + File.separator))
            refuse("resolves outside the bundle (to ${full.path})")
        return full
    }
}
