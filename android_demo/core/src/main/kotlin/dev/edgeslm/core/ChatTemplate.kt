package dev.edgeslm.core

import org.json.JSONObject

/**
 * The chat template in the form an app without Jinja applies (manifest `app.chat`, docs/apps.md):
 * prompt = (first message is system ? system.prefix + content + system.suffix : begin),
 * then ROLE.prefix + content + ROLE.suffix for every other message, then generation_prompt when the app wants the
 * reply, else `end` (what the template closes a conversation with, e.g. Phi-3's end-of-text; "" when absent).
 * With `trim_content` (Jinja `| trim`), each content is first stripped of surrounding whitespace as Python's
 * `str.strip()` does (see [pythonStrip]).
 * The result is tokenized without adding special tokens (BOS, if any, is already in begin / system.prefix).
 */
class ChatTemplate private constructor(
    /** "simple" (rendered by [render]) or "none" (see [reason]). */
    val kind: String,
    val reason: String?,
    /** The model's original Jinja template, kept for reference (null when it has none). */
    val jinja: String?,
    private val begin: String,
    val systemSupported: Boolean,
    private val roles: Map<String, Pair<String, String>>,
    private val generationPrompt: String,
    private val end: String,
    val trimContent: Boolean,
) {
    companion object {
        const val SIMPLE = "simple"
        const val NONE = "none"

        fun from(chat: JSONObject): ChatTemplate {
            val kind = chat.str("kind", "app.chat")
            val reason = chat.strOrNull("reason", "app.chat")
            val jinja = chat.strOrNull("jinja", "app.chat")
            if (kind == NONE) return ChatTemplate(kind, reason ?: "the bundle gives no reason", jinja, "", false, emptyMap(), "", "", false)
            if (kind != SIMPLE) throw BundleException("manifest.json: app.chat.kind \"$kind\" is not one this app knows (simple, none)",
                "update the app, or re-export the bundle with an edgeslm writing schema 1.x")
            fun role(name: String): Pair<String, String> {
                val r = chat.obj(name, "app.chat")
                return r.str("prefix", "app.chat.$name") to r.str("suffix", "app.chat.$name")
            }
            val system = chat.obj("system", "app.chat")
            val supported = system.bool("supported", "app.chat.system")
            val roles = buildMap {
                put("user", role("user"))
                put("assistant", role("assistant"))
                if (supported) put("system", role("system"))
            }
            return ChatTemplate(kind, reason, jinja, chat.strOrNull("begin", "app.chat") ?: "", supported, roles,
                chat.str("generation_prompt", "app.chat"), chat.strOrNull("end", "app.chat") ?: "",
                chat.valueOrNull("trim_content") as? Boolean ?: false)
        }
    }

    /** Renders [messages] by the rule above. Refuses (BundleException) when the model has no simple template, a system
     *  message the template does not support, a system message after the first, an unknown role, or no messages. */
    fun render(messages: List<Message>, addGenerationPrompt: Boolean): String {
        if (kind == NONE) throw BundleException("this model has no chat template the app can apply: $reason",
            "send a raw prompt (completion), or export a model with a chat template")
        if (messages.isEmpty()) throw BundleException("no messages to render", "send at least one message")
        val sb = StringBuilder()
        messages.forEachIndexed { i, m ->
            if (m.role == "system") {
                if (!systemSupported) throw BundleException("this model's chat template does not support a system message",
                    "leave the system prompt empty, or put its text into the first user message")
                if (i != 0) throw BundleException("a system message is supported only as the first message (message ${i + 1} is one)",
                    "put the system prompt first")
            } else if (i == 0) sb.append(begin)
            val (prefix, suffix) = roles[m.role] ?: throw BundleException("unknown chat role \"${m.role}\" (message ${i + 1})",
                "use system, user or assistant")
            sb.append(prefix).append(if (trimContent) pythonStrip(m.content) else m.content).append(suffix)
        }
        sb.append(if (addGenerationPrompt) generationPrompt else end)
        return sb.toString()
    }
}

/** [s] without leading and trailing whitespace as Python's `str.strip()` (and so Jinja's `trim`) defines it:
 *  Kotlin's `trim()` differs (it keeps U+0085). */
fun pythonStrip(s: String): String {
    fun ws(c: Char) = c in "\t\n\u000b\u000c\r\u001c\u001d\u001e\u001f \u0085\u00a0\u1680\u2028\u2029\u202f\u205f\u3000" ||
        c in '\u2000'..'\u200a'
    var a = 0
    var b = s.length
    while (a < b && ws(s[a])) a++
    while (b > a && ws(s[b - 1])) b--
    return s.substring(a, b)
}
