import SwiftUI

@main
struct EdgeSLMDemoApp: App {
    @StateObject private var model = ChatModel()

    var body: some Scene {
        WindowGroup {
            RootView().environmentObject(model)
        }
    }
}
