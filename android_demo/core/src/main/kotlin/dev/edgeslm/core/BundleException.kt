package dev.edgeslm.core

/** Why a bundle (or a request against it) is refused, and what the user can do about it. Shown as is on screen. */
class BundleException(val problem: String, val fix: String) : Exception("$problem. Fix: $fix")
