import XCTest

final class PSPlotPlaceholderTests: XCTestCase {
    func test_placeholder() {}
}
