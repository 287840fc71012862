package dev.edgeslm.core

/** One chat message: role is "system", "user" or "assistant". */
data class Message(val role: String, val content: String)
