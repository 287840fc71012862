package dev.edgeslm.core

import org.json.JSONObject
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test
import java.io.File
import java.io.RandomAccessFile
import java.nio.file.Files

/** What a bundle reader must refuse, on altered copies of the real bundle. */
class BundleSafetyTest {
    private fun mutated(edit: (JSONObject) -> Unit): File {
        val d = TestBundles.copy()
        val m = TestBundles.manifest(d)
        edit(m)
        TestBundles.writeManifest(d, m)
        return d
    }

    private fun assertMentions(e: BundleException, vararg words: String) {
        for (w in words) assertTrue("'${e.message}' should mention '$w'", e.message!!.contains(w))
        assertTrue("no fix given", e.fix.isNotBlank())
    }

    @Test fun tamperedFileIsRefusedNamingIt() {
        val d = TestBundles.copy()
        val b = Bundle.open(d)
        val a = b.artifacts.first()
        val target = a.entries.first()
        RandomAccessFile(target.file, "rw").use { f ->
            val pos = f.length() / 2
            f.seek(pos); val x = f.read(); f.seek(pos); f.write(x xor 0x01)
        }
        assertMentions(refused { b.verify(a) }, target.path, "modified")
    }

    @Test fun tamperedTokenizerIsRefusedNamingIt() {
        val d = TestBundles.copy()
        val b = Bundle.open(d)
        val tok = b.tokenizerFiles.first()
        val bytes = tok.file.readBytes(); bytes[0] = (bytes[0].toInt() xor 0x20).toByte(); tok.file.writeBytes(bytes)
        for (a in b.artifacts) assertMentions(refused { b.verify(a) }, tok.path)
    }

    @Test fun truncatedFileIsRefusedNamingIt() {
        val d = TestBundles.copy()
        val b = Bundle.open(d)
        val a = b.artifacts.last()
        val target = a.entries.last()
        RandomAccessFile(target.file, "rw").use { it.setLength(it.length() - 1) }
        assertMentions(refused { b.verify(a) }, target.path, "truncated")
    }

    @Test fun missingFileIsRefusedNamingIt() {
        val d = TestBundles.copy()
        val b = Bundle.open(d)
        val a = b.artifacts.first()
        assertTrue(a.entries.first().file.delete())
        assertMentions(refused { b.verify(a) }, a.entries.first().path, "missing")
    }

    @Test fun tamperedGoldenIsRefused() {
        val d = TestBundles.copy()
        val b = Bundle.open(d)
        val g = b.golden!!
        g.file.appendText(" ")
        assertMentions(refused { b.readGolden() }, g.path)
    }

    @Test fun dotDotPathIsRefused() {
        val d = mutated { it.getJSONArray("artifacts").getJSONObject(0).put("file", "../outside.pte") }
        assertMentions(refused { Bundle.open(d) }, "../outside.pte", "'..'")
        val d2 = mutated { it.getJSONArray("artifacts").getJSONObject(0).getJSONObject("load").put("path", "sub/../../x") }
        assertMentions(refused { Bundle.open(d2) }, "sub/../../x")
        val d3 = mutated { it.getJSONObject("tokenizer").getJSONArray("files").getJSONObject(0).put("file", "..\\tokenizer.json") }
        refused { Bundle.open(d3) }
    }

    @Test fun absolutePathIsRefused() {
        val d = mutated { it.getJSONArray("artifacts").getJSONObject(0).getJSONObject("load").put("tokenizer", "/etc/passwd") }
        assertMentions(refused { Bundle.open(d) }, "/etc/passwd", "absolute")
        val d2 = mutated { it.getJSONArray("artifacts").getJSONObject(0).put("file", "C:\\model.pte") }
        assertMentions(refused { Bundle.open(d2) }, "absolute")
    }

    @Test fun symlinkIsRefused() {
        val d = TestBundles.copy()
        val m = TestBundles.manifest(d)
        val art = m.getJSONArray("artifacts").getJSONObject(0)
        val f = File(d, art.getString("file"))
        val outside = Files.createTempFile("edgeslm-outside-", ".bin").toFile().also { it.deleteOnExit() }
        f.copyTo(outside, overwrite = true)
        f.delete()
        Files.createSymbolicLink(f.toPath(), outside.toPath())
        assertMentions(refused { Bundle.open(d) }, art.getString("file"), "symlink")
        // a symlink that stays inside the bundle is refused too
        f.delete()
        val inside = File(d, "inside.bin"); outside.copyTo(inside)
        Files.createSymbolicLink(f.toPath(), inside.toPath())
        assertMentions(refused { Bundle.open(d) }, "symlink")
    }

    @Test fun notAnEdgeslmManifestIsRefused() {
        assertMentions(refused { Bundle.open(mutated { it.put("kind", "something-else") }) }, "edgeslm-bundle")
        assertMentions(refused { Bundle.open(mutated { it.remove("kind") }) }, "kind")
        val empty = Files.createTempDirectory("edgeslm-empty-").toFile().also { it.deleteOnExit() }
        assertMentions(refused { Bundle.open(empty) }, "manifest.json")
    }

    @Test fun otherSchemaMajorIsRefused() {
        assertMentions(refused { Bundle.open(mutated { it.put("schema_version", "2.0") }) }, "2.0", "1.x")
        assertMentions(refused { Bundle.open(mutated { it.put("schema_version", "0.9") }) }, "0.9")
        refused { Bundle.open(mutated { it.put("schema_version", 1.2) }) }
        // a newer 1.x minor is read (1.x readers ignore fields they do not know)
        Bundle.open(mutated { it.put("schema_version", "1.99"); it.put("future_field", JSONObject().put("x", 1)) })
    }

    @Test fun missingRequiredFieldsAreRefused() {
        assertMentions(refused { Bundle.open(mutated { it.getJSONArray("artifacts").getJSONObject(0).remove("load") }) }, "artifacts[0].load")
        assertMentions(refused { Bundle.open(mutated { it.getJSONArray("artifacts").getJSONObject(0).getJSONObject("load").remove("runtime") }) }, "runtime")
        assertMentions(refused { Bundle.open(mutated { it.getJSONArray("artifacts").getJSONObject(0).remove("sha256") }) }, "sha256")
        assertMentions(refused { Bundle.open(mutated { it.remove("app") }) }, "app")
        assertMentions(refused { Bundle.open(mutated { it.getJSONObject("app").remove("chat") }) }, "app.chat")
        assertMentions(refused { Bundle.open(mutated { it.remove("status") }) }, "status")
        assertMentions(refused { Bundle.open(mutated { it.getJSONArray("artifacts").getJSONObject(0).put("parity", JSONObject.NULL) }) }, "parity")
    }

    @Test fun failedBundleStatusIsRefusedByChoose() {
        val b = Bundle.open(mutated { it.put("status", "failed") })
        val runtimes = b.artifacts.map { it.runtime }.toSet()
        assertMentions(refused { b.choose(runtimes) }, "failed")
    }

    /** The bundle with status and every parity "passed" (a random-weight test model may have failed its gates). */
    private fun passing(edit: (JSONObject) -> Unit = {}): Bundle = Bundle.open(mutated { m ->
        m.put("status", "passed")
        val arts = m.getJSONArray("artifacts")
        for (i in 0 until arts.length()) arts.getJSONObject(i).put("parity", "passed")
        edit(m)
    })

    @Test fun failedArtifactParityIsRefusedByChoose() {
        val b = passing { it.getJSONArray("artifacts").getJSONObject(0).put("parity", "failed") }
        val first = b.artifacts.first()
        assertMentions(refused { b.choose(setOf(first.runtime)) }, first.name, "parity")
    }

    @Test fun chooseTakesTheFirstAvailableRuntime() {
        val b = passing()
        for (a in b.artifacts) {
            assertEquals(b.artifacts.first { it.runtime == a.runtime }.name, b.choose(setOf(a.runtime)).name)
        }
        assertEquals(b.artifacts.first().name, b.choose(b.artifacts.map { it.runtime }.toSet()).name)
        assertMentions(refused { b.choose(setOf("no-such-runtime")) }, "no-such-runtime")
        // parity "runtime_not_run" (the runtime could not run at export) is loaded, not refused
        val notRun = passing { it.getJSONArray("artifacts").getJSONObject(0).put("parity", "runtime_not_run") }
        assertEquals(notRun.artifacts.first().name, notRun.choose(setOf(notRun.artifacts.first().runtime)).name)
    }

    @Test fun chooseNeverPicksADraft() {
        // a speculative-decoding draft lowered beside its target (edgeslm export --draft) is not a chat model
        val b = passing { it.getJSONArray("artifacts").getJSONObject(0).put("role", "draft") }
        val draft = b.artifacts.first()
        assertEquals("draft", draft.role)
        assertMentions(refused { b.choose(setOf(draft.runtime)) }, "no model artifact", "${draft.name} for ${draft.runtime} (draft)")
        val rest = b.artifacts.drop(1)
        if (rest.isNotEmpty()) assertEquals(rest.first().name, b.choose(b.artifacts.map { it.runtime }.toSet()).name)
        assertEquals("model", passing().artifacts.first().role)
    }
}
