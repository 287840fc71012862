package dev.edgeslm.core

import org.json.JSONArray
import org.json.JSONObject

// Strict readers over org.json (Android's implementation: optString() turns a JSON null into "null", so these
// check types themselves). `where` names the place in the manifest for the error message.

internal const val REEXPORT = "re-export the bundle with `edgeslm export` (manifest schema 1.2 or newer 1.x)"

internal fun missing(where: String, key: String, what: String): Nothing =
    throw BundleException("manifest.json: $where.$key is missing or not $what", REEXPORT)

internal fun JSONObject.valueOrNull(key: String): Any? =
    if (!has(key) || isNull(key)) null else get(key)

internal fun JSONObject.str(key: String, where: String): String =
    valueOrNull(key) as? String ?: missing(where, key, "a string")

internal fun JSONObject.strOrNull(key: String, where: String): String? = when (val v = valueOrNull(key)) {
    null -> null
    is String -> v
    else -> missing(where, key, "a string or null")
}

internal fun JSONObject.obj(key: String, where: String): JSONObject =
    valueOrNull(key) as? JSONObject ?: missing(where, key, "an object")

internal fun JSONObject.objOrNull(key: String, where: String): JSONObject? = when (val v = valueOrNull(key)) {
    null -> null
    is JSONObject -> v
    else -> missing(where, key, "an object or null")
}

internal fun JSONObject.arr(key: String, where: String): JSONArray =
    valueOrNull(key) as? JSONArray ?: missing(where, key, "an array")

internal fun JSONObject.bool(key: String, where: String): Boolean =
    valueOrNull(key) as? Boolean ?: missing(where, key, "true or false")

internal fun JSONObject.long(key: String, where: String): Long = when (val v = valueOrNull(key)) {
    is Int -> v.toLong()
    is Long -> v
    is Number -> if (v.toDouble() == Math.floor(v.toDouble())) v.toLong() else missing(where, key, "an integer")
    else -> missing(where, key, "an integer")
}

internal fun JSONArray.objects(where: String): List<JSONObject> =
    (0 until length()).map { i -> optJSONObject(i) ?: throw BundleException("manifest.json: $where[$i] is not an object", REEXPORT) }

internal fun JSONArray.strings(where: String): List<String> =
    (0 until length()).map { i -> (if (isNull(i)) null else get(i)) as? String
        ?: throw BundleException("manifest.json: $where[$i] is not a string", REEXPORT) }

internal fun JSONArray.ints(where: String): List<Int> =
    (0 until length()).map { i -> (if (isNull(i)) null else get(i)) as? Int
        ?: throw BundleException("manifest.json: $where[$i] is not an integer", REEXPORT) }
