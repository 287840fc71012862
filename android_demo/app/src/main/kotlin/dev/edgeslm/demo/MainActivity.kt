package dev.edgeslm.demo

import android.app.Activity
import android.os.Bundle as AndroidBundle
import android.view.LayoutInflater
import android.view.View
import android.widget.ArrayAdapter
import android.widget.Button
import android.widget.EditText
import android.widget.LinearLayout
import android.widget.ListView
import android.widget.ScrollView
import android.widget.TextView
import dev.edgeslm.core.Artifact
import dev.edgeslm.core.Bundle
import dev.edgeslm.core.BundleException
import dev.edgeslm.core.ChatTemplate
import dev.edgeslm.core.Engine
import dev.edgeslm.core.GenerationSettings
import dev.edgeslm.core.Message
import java.io.File
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors

/**
 * One Activity, three panels: the bundle picker (bundles found under [DEVICE_DIR] and the app's external files
 * folder, or a typed path), the refusal panel (a bundle that failed its export checks, a tampered or missing file:
 * the reason and the fix on screen), and the chat (streaming reply, TTFT and tok/s, which artifact and runtime run).
 * Everything that touches a bundle or a runtime runs on [worker], never on the UI thread.
 *
 * `adb shell am start -n dev.edgeslm.demo/.MainActivity -e bundle /data/local/tmp/edgeslm/NAME` opens a bundle directly.
 */
class MainActivity : Activity() {
    companion object {
        /** Where `edgeslm push` puts bundles (docs/apps.md): adb can write there, apps can read it. */
        const val DEVICE_DIR = "/data/local/tmp/edgeslm"
        const val EXTRA_BUNDLE = "bundle"
    }

    /** One bundle folder found on the device, and what opening its manifest said. */
    private class BundleRow(val dir: File, val summary: String) {
        override fun toString() = summary
    }

    private val worker: ExecutorService = Executors.newSingleThreadExecutor()
    private lateinit var picker: View
    private lateinit var refused: View
    private lateinit var chat: View
    private lateinit var messages: LinearLayout
    private lateinit var scroll: ScrollView
    private lateinit var input: EditText
    private lateinit var send: Button
    private lateinit var statsLine: TextView

    // the open bundle (set on the worker, read on the UI thread after a post)
    @Volatile private var engine: Engine? = null
    private var bundle: Bundle? = null
    private var artifact: Artifact? = null
    private var settings: GenerationSettings? = null
    private var template: ChatTemplate? = null
    private val history = mutableListOf<Message>()
    @Volatile private var generating = false

    override fun onCreate(savedInstanceState: AndroidBundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        picker = findViewById(R.id.picker)
        refused = findViewById(R.id.refused)
        chat = findViewById(R.id.chat)
        messages = findViewById(R.id.messages)
        scroll = findViewById(R.id.message_scroll)
        input = findViewById(R.id.input)
        send = findViewById(R.id.send)
        statsLine = findViewById(R.id.stats_line)

        findViewById<TextView>(R.id.pick_where).text = getString(R.string.pick_where, roots().joinToString("\n") { it.path })
        findViewById<Button>(R.id.refresh).setOnClickListener { scan() }
        findViewById<Button>(R.id.open_path).setOnClickListener {
            val p = findViewById<EditText>(R.id.path_input).text.toString().trim()
            if (p.isNotEmpty()) openBundle(File(p))
        }
        findViewById<ListView>(R.id.bundle_list).setOnItemClickListener { parent, _, pos, _ ->
            openBundle((parent.getItemAtPosition(pos) as BundleRow).dir)
        }
        findViewById<Button>(R.id.refused_back).setOnClickListener { show(picker); scan() }
        findViewById<Button>(R.id.change_bundle).setOnClickListener { closeBundle(); show(picker); scan() }
        send.setOnClickListener { if (generating) engine?.stop() else sendMessage() }

        val direct = intent?.getStringExtra(EXTRA_BUNDLE)
        if (direct != null) openBundle(File(direct)) else { show(picker); scan() }
    }

    override fun onDestroy() {
        engine?.stop()
        worker.execute { engine?.close(); engine = null }
        worker.shutdown()
        super.onDestroy()
    }

    private fun roots(): List<File> = listOfNotNull(File(DEVICE_DIR), getExternalFilesDir(null))

    private fun show(panel: View) {
        for (p in listOf(picker, refused, chat)) p.visibility = if (p === panel) View.VISIBLE else View.GONE
    }

    // ---- picker ---------------------------------------------------------------------------------------------

    /** Lists bundle folders (those holding a manifest.json) under the roots, each with what its manifest says. */
    private fun scan() {
        worker.execute {
            val rows = roots().flatMap { root ->
                (root.listFiles()?.filter { File(it, Bundle.MANIFEST).isFile } ?: emptyList()).sortedBy { it.name }
            }.map { dir -> BundleRow(dir, describe(dir)) }
            runOnUiThread {
                val list = findViewById<ListView>(R.id.bundle_list)
                list.adapter = ArrayAdapter(this, R.layout.item_bundle, rows)
                findViewById<View>(R.id.pick_empty).visibility = if (rows.isEmpty()) View.VISIBLE else View.GONE
            }
        }
    }

    private fun describe(dir: File): String = try {
        val b = Bundle.open(dir)
        val model = b.manifest.optJSONObject("model")?.optString("id") ?: "?"
        val arts = b.artifacts.joinToString { "${it.name} (${it.runtime}, parity ${it.parity})" }
        "${dir.name}\n$model · status ${b.status}\n$arts"
    } catch (e: BundleException) {
        "${dir.name}\nwill be refused: ${e.problem}"
    } catch (e: Exception) {
        "${dir.name}\nunreadable: ${e.message}"
    }

    // ---- open / refuse --------------------------------------------------------------------------------------

    private fun openBundle(dir: File) {
        show(picker)
        findViewById<TextView>(R.id.pick_where).text = getString(R.string.opening, dir.path)
        worker.execute {
            closeEngine()
            try {
                val b = Bundle.open(dir)
                val (a, e) = Engines.open(b)     // choose (refuses failed) + verify (sha256) + load
                val s = b.settingsFor(a)
                val t = b.chatTemplate()
                engine = e
                runOnUiThread { showChat(b, a, s, t) }
            } catch (e: BundleException) {
                runOnUiThread { showRefused(dir, e.problem, e.fix) }
            } catch (e: Throwable) {      // a runtime that failed to load (native library, unsupported .pte, ...)
                runOnUiThread { showRefused(dir, "${e.javaClass.simpleName}: ${e.message}", "check the app's runtime versions against the bundle's load.runtime_version") }
            }
        }
    }

    private fun showRefused(dir: File, problem: String, fix: String) {
        findViewById<TextView>(R.id.pick_where).text = getString(R.string.pick_where, roots().joinToString("\n") { it.path })
        findViewById<TextView>(R.id.refused_bundle).text = dir.path
        findViewById<TextView>(R.id.refused_problem).text = problem
        findViewById<TextView>(R.id.refused_fix).text = getString(R.string.refused_fix, fix)
        show(refused)
    }

    private fun closeEngine() {
        engine?.close()
        engine = null
    }

    private fun closeBundle() {
        engine?.stop()
        worker.execute { closeEngine() }
        bundle = null; artifact = null; settings = null; template = null
        history.clear()
        messages.removeAllViews()
    }

    // ---- chat -----------------------------------------------------------------------------------------------

    private fun showChat(b: Bundle, a: Artifact, s: GenerationSettings, t: ChatTemplate) {
        bundle = b; artifact = a; settings = s; template = t
        history.clear()
        messages.removeAllViews()
        val linked = if (a.runtime == "executorch") BuildConfig.EXECUTORCH_VERSION else BuildConfig.GENAI_VERSION
        findViewById<TextView>(R.id.engine_line).text =
            getString(R.string.chat_engine, a.name, a.runtime, linked, a.runtimeVersion ?: "?")
        val applied = s.values.entries.joinToString { "${it.key}=${it.value}" }
        val ignored = s.ignored.entries.joinToString { "${it.key}=${it.value}" }
        findViewById<TextView>(R.id.settings_line).text = getString(R.string.chat_settings, applied) +
            (if (ignored.isNotEmpty()) "\n" + getString(R.string.chat_ignored, ignored) else "")
        findViewById<TextView>(R.id.mode_line).text =
            if (t.kind == ChatTemplate.SIMPLE) getString(R.string.chat_mode_chat) else getString(R.string.chat_mode_raw, t.reason ?: "")
        statsLine.text = getString(R.string.stats_idle)
        show(chat)
    }

    private fun addMessage(role: String, text: String): TextView {
        val v = LayoutInflater.from(this).inflate(R.layout.item_message, messages, false) as TextView
        val who = getString(if (role == "user") R.string.role_user else R.string.role_assistant)
        v.tag = who
        v.text = "$who: $text"
        v.setBackgroundColor(getColor(if (role == "user") R.color.user_bubble else R.color.model_bubble))
        messages.addView(v)
        scroll.post { scroll.fullScroll(View.FOCUS_DOWN) }
        return v
    }

    /**
     * Chat template (kind "simple"): the whole conversation is rendered by core's ChatTemplate and sent as one
     * independent prompt (the engine resets its context); its BOS, if any, is in the rendered text, so no BOS is
     * added. No template (kind "none"): the text is a raw completion prompt, BOS per the manifest's `add_bos`.
     */
    private fun sendMessage() {
        val e = engine ?: return
        val s = settings ?: return
        val t = template ?: return
        val text = input.text.toString()
        if (text.isBlank()) return
        val chatMode = t.kind == ChatTemplate.SIMPLE
        val prompt: String
        val runSettings: GenerationSettings
        try {
            if (chatMode) {
                prompt = t.render(history + Message("user", text), addGenerationPrompt = true)
                runSettings = GenerationSettings(s.runtime, s.values, s.ignored, s.eosIds, s.stopStrings,
                    addBos = false, bosId = s.bosId, bos = s.bos)
            } else {
                prompt = text
                runSettings = s
            }
        } catch (ex: BundleException) {
            statsLine.text = ex.problem
            return
        }
        input.setText("")
        addMessage("user", text)
        val reply = addMessage("assistant", "")
        val sb = StringBuilder()
        generating = true
        send.setText(R.string.stop)
        statsLine.setText(R.string.stats_running)
        worker.execute {
            try {
                val st = e.generate(prompt, runSettings) { piece ->
                    runOnUiThread {
                        sb.append(piece)
                        reply.text = "${reply.tag}: $sb"
                        scroll.post { scroll.fullScroll(View.FOCUS_DOWN) }
                    }
                }
                runOnUiThread {
                    if (chatMode) { history += Message("user", text); history += Message("assistant", sb.toString()) }
                    statsLine.text = getString(R.string.stats_done, st.ttftMs, st.decodeTokPerS, st.tokens)
                }
            } catch (ex: Throwable) {
                runOnUiThread { statsLine.text = getString(R.string.error_generation, ex.message ?: ex.javaClass.simpleName) }
            } finally {
                generating = false
                runOnUiThread { send.setText(R.string.send) }
            }
        }
    }
}
