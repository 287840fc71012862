package dev.edgeslm.core

import java.io.File
import java.security.MessageDigest

/** sha256 of a file as lowercase hex, read in 1 MiB blocks (artifacts are hundreds of MB: never read whole). */
internal fun sha256Hex(file: File): String {
    val md = MessageDigest.getInstance("SHA-256")
    val buf = ByteArray(1 shl 20)
    file.inputStream().use { input ->
        while (true) {
            val n = input.read(buf)
            if (n < 0) break
            md.update(buf, 0, n)
        }
    }
    return md.digest().joinToString("") { "%02x".format(it.toInt() and 0xff) }
}
