// Versions: AGP 8.13.x needs Gradle >= 8.13 and JDK 17. Do not move to
// AGP 9 without dropping org.jetbrains.kotlin.android (AGP 9 has built-in Kotlin and fails when it is applied).
// The Kotlin version must stay equal to KOTLIN_VERSION in scripts/install-tools.sh (the local kotlinc build).
plugins {
    id("com.android.application") version "8.13.2" apply false
    id("org.jetbrains.kotlin.android") version "2.2.21" apply false
    id("org.jetbrains.kotlin.jvm") version "2.2.21" apply false
}
