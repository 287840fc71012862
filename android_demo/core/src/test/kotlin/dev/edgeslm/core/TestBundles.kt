package dev.edgeslm.core

import org.json.JSONArray
import org.json.JSONObject
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import java.io.File
import java.nio.file.Files
import java.nio.file.StandardCopyOption

/** The bundle under test: system property `edgeslm.bundle` (a folder written by `edgeslm export`, with golden.json). */
object TestBundles {
    val dir: File by lazy {
        val p = System.getProperty("edgeslm.bundle")
            ?: throw AssertionError("set -Dedgeslm.bundle=<bundle folder written by `edgeslm export`> (android_demo/scripts/test-core.sh does)")
        File(p).also { assertTrue("edgeslm.bundle=$p is not a folder", it.isDirectory) }
    }

    fun open(): Bundle = Bundle.open(dir)

    /** A private copy of the bundle in a new temp folder (deleted at JVM exit). */
    fun copy(): File {
        val dst = Files.createTempDirectory("edgeslm-bundle-").toFile()
        dst.deleteOnExit()
        dir.walkTopDown().forEach { f ->
            val t = File(dst, f.relativeTo(dir).path)
            if (f.isDirectory) t.mkdirs() else Files.copy(f.toPath(), t.toPath(), StandardCopyOption.REPLACE_EXISTING)
            t.deleteOnExit()
        }
        return dst
    }

    fun manifest(dir: File): JSONObject = JSONObject(File(dir, Bundle.MANIFEST).readText())

    fun writeManifest(dir: File, m: JSONObject) = File(dir, Bundle.MANIFEST).writeText(m.toString(1))

    fun golden(): JSONObject = open().readGolden()
}

fun JSONArray.objectList(): List<JSONObject> = (0 until length()).map { getJSONObject(it) }

fun JSONArray.byteArray(): ByteArray = ByteArray(length()) { getInt(it).toByte() }

fun bytesOf(vararg b: Int): ByteArray = ByteArray(b.size) { b[it].toByte() }

/** Runs [block], which must throw a BundleException, and returns it. */
fun refused(block: () -> Unit): BundleException {
    try {
        block()
    } catch (e: BundleException) {
        return e
    }
    fail("expected a BundleException, got none")
    throw IllegalStateException()
}
