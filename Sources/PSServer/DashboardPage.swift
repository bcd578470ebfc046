/// The self-contained dashboard `GET /` serves.
enum DashboardPage {
    static let html = "<!doctype html><title>SwiftPS</title>"
}
