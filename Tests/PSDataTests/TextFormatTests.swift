import PSData
import XCTest

final class CSVTests: XCTestCase {
    func test_load_headerAndLabelFirst_readsRowsAndInfersClasses() throws {
        let files = try TestFiles(self)
        let path = try files.write("train.csv", text: "label,a,b\n1,0.5,2\n0, 1 ,3\n2,-1,4e1\n")
        let data = try DataSource.csv(path: path, labelColumn: .first).loadTrain()
        XCTAssertEqual(data.rowCount, 3)
        XCTAssertEqual(data.featureCount, 2)
        XCTAssertEqual(data.features, [0.5, 2, 1, 3, -1, 40])
        XCTAssertEqual(data.labels, [1, 0, 2])
        XCTAssertEqual(data.classCount, 3)
        XCTAssertEqual(data.name, path)
    }

    func test_load_labelLastCRLFAndBlankLines_readsRows() throws {
        let files = try TestFiles(self)
        let path = try files.write("x.csv", text: "0.25,0.75,1.5\r\n\r\n1,2,3.5\r\n\n")
        let data = try DataSource.csv(path: path, labelColumn: .last).loadTrain()
        XCTAssertEqual(data.features, [0.25, 0.75, 1, 2])
        XCTAssertEqual(data.labels, [1.5, 3.5])
        XCTAssertEqual(data.classCount, 0, "a fractional label makes it regression data")
    }

    func test_load_negativeLabel_isRegression() throws {
        let files = try TestFiles(self)
        let path = try files.write("x.csv", text: "-1,2\n1,3\n")
        XCTAssertEqual(try DataSource.csv(path: path, labelColumn: .first).loadTrain().classCount, 0)
    }

    func test_load_gzip_readsTheSameRows() throws {
        let files = try TestFiles(self)
        let text = "y,f\n" + (0..<500).map { "\($0 % 3),\(Float($0) / 8)" }.joined(separator: "\n")
        let plain = try files.write("plain.csv", text: text)
        let zipped = try files.gzip(try files.write("zipped.csv", text: text))
        let a = try DataSource.csv(path: plain, labelColumn: .first).loadTrain()
        let b = try DataSource.csv(path: zipped, labelColumn: .first).loadTrain()
        XCTAssertEqual(a.features, b.features)
        XCTAssertEqual(a.labels, b.labels)
        XCTAssertEqual(b.rowCount, 500)
    }

    func test_load_nonNumericField_namesLineAndColumn() throws {
        let files = try TestFiles(self)
        let path = try files.write("bad.csv", text: "label,a,b\n1,2,3\n\n4,5, abc\n")
        let error = dataError { () throws(DataError) in try DataSource.csv(path: path, labelColumn: .first).loadTrain()
        }
        XCTAssertEqual(error, DataError(file: path, location: "line 4, column 3", message: "'abc' is not a number"))
        XCTAssertEqual(error?.description, "\(path): line 4, column 3: 'abc' is not a number")
    }

    func test_load_nonFiniteField_isRejected() throws {
        let files = try TestFiles(self)
        let path = try files.write("bad.csv", text: "1,2\n1,nan\n")
        let error = dataError { () throws(DataError) in try DataSource.csv(path: path, labelColumn: .first).loadTrain()
        }
        XCTAssertEqual(error, DataError(file: path, location: "line 2, column 2", message: "'nan' is not a number"))
    }

    func test_load_wrongColumnCount_namesLine() throws {
        let files = try TestFiles(self)
        let path = try files.write("bad.csv", text: "1,2,3\n4,5,6\n7,8\n")
        let error = dataError { () throws(DataError) in try DataSource.csv(path: path, labelColumn: .first).loadTrain()
        }
        XCTAssertEqual(error, DataError(file: path, location: "line 3", message: "has 2 columns, expected 3"))
        XCTAssertEqual(error?.description, "\(path): line 3: has 2 columns, expected 3")
    }

    func test_load_headerSetsColumnCount() throws {
        let files = try TestFiles(self)
        let path = try files.write("bad.csv", text: "y,a,b\n1,2\n")
        let error = dataError { () throws(DataError) in try DataSource.csv(path: path, labelColumn: .first).loadTrain()
        }
        XCTAssertEqual(error, DataError(file: path, location: "line 2", message: "has 2 columns, expected 3"))
    }

    func test_load_singleColumn_isRejected() throws {
        let files = try TestFiles(self)
        let path = try files.write("bad.csv", text: "1\n2\n")
        let error = dataError { () throws(DataError) in try DataSource.csv(path: path, labelColumn: .first).loadTrain()
        }
        XCTAssertEqual(
            error,
            DataError(file: path, location: "line 1", message: "has 1 column; need a label and at least one feature"))
    }

    func test_load_headerOnly_hasNoRows() throws {
        let files = try TestFiles(self)
        let path = try files.write("empty.csv", text: "y,a\n")
        let error = dataError { () throws(DataError) in try DataSource.csv(path: path, labelColumn: .first).loadTrain()
        }
        XCTAssertEqual(error, DataError(file: path, message: "no data rows"))
    }

    func test_load_missingFile_namesPath() throws {
        let files = try TestFiles(self)
        let path = files.directory + "/absent.csv"
        let error = dataError { () throws(DataError) in try DataSource.csv(path: path, labelColumn: .first).loadTrain()
        }
        XCTAssertEqual(error, DataError(file: path, message: "no such file"))
    }

    func test_loadSplits_companionTestFile_isFound() throws {
        let files = try TestFiles(self)
        let train = try files.write("digits_train.csv", text: "0,1,2\n1,3,4\n")
        try files.write("digits_test.csv", text: "2,5,6\n")
        let source = DataSource.csv(path: train, labelColumn: .first)
        let (trainSet, testSet) = try source.loadSplits()
        XCTAssertEqual(trainSet.classCount, 3, "train and test agree on one class count")
        XCTAssertEqual(testSet?.classCount, 3)
        XCTAssertEqual(testSet?.features, [5, 6])
        XCTAssertEqual(try source.loadTest()?.labels, [2])
    }

    func test_loadSplits_testWithOtherWidth_isAFeatureCountMismatch() throws {
        let files = try TestFiles(self)
        let train = try files.write("a_train.csv", text: "0,1,2\n")
        let test = try files.write("a_test.csv", text: "0,1,2,3\n")
        let error = dataError { () throws(DataError) in
            try DataSource.csv(path: train, labelColumn: .first).loadSplits()
        }
        XCTAssertEqual(
            error,
            DataError(
                file: test,
                message: "feature count mismatch: the test split has 3 features, the train split \(train) has 2"))
    }

    func test_loadTest_withoutCompanion_isNil() throws {
        let files = try TestFiles(self)
        let path = try files.write("only.csv", text: "0,1\n")
        XCTAssertNil(try DataSource.csv(path: path, labelColumn: .first).loadTest())
    }
}

final class LIBSVMTests: XCTestCase {
    func test_load_sparseRows_areDensified() throws {
        let files = try TestFiles(self)
        let path = try files.write("a.svm", text: "1 1:0.5 3:2\n# a comment line\n\n0 2:1  # trailing comment\n2\n")
        let data = try DataSource.libsvm(path: path, featureCount: nil).loadTrain()
        XCTAssertEqual(data.featureCount, 3)
        XCTAssertEqual(data.features, [0.5, 0, 2, 0, 1, 0, 0, 0, 0])
        XCTAssertEqual(data.labels, [1, 0, 2])
        XCTAssertEqual(data.classCount, 3)
    }

    func test_load_givenFeatureCount_padsRows() throws {
        let files = try TestFiles(self)
        let path = try files.write("a.svm", text: "+1 1:1\n-1 2:1\n")
        let data = try DataSource.libsvm(path: path, featureCount: 4).loadTrain()
        XCTAssertEqual(data.featureCount, 4)
        XCTAssertEqual(data.features, [1, 0, 0, 0, 0, 1, 0, 0])
        XCTAssertEqual(data.labels, [1, 0], "-1/+1 labels are the classes 0 and 1")
        XCTAssertEqual(data.classCount, 2)
    }

    func test_load_gzip_readsTheSameRows() throws {
        let files = try TestFiles(self)
        let path = try files.gzip(try files.write("a.svm", text: "1 1:0.5 3:2\n0 2:1\n"))
        let data = try DataSource(parsing: path).loadTrain()
        XCTAssertEqual(data.features, [0.5, 0, 2, 0, 1, 0])
    }

    func test_load_badToken_namesLineAndToken() throws {
        let files = try TestFiles(self)
        let path = try files.write("a.svm", text: "1 1:1\n0 2:1\n1 5:abc\n")
        let error = dataError { () throws(DataError) in try DataSource.libsvm(path: path, featureCount: nil).loadTrain()
        }
        XCTAssertEqual(error, DataError(file: path, location: "line 3", message: "'5:abc' is not INDEX:VALUE"))
        XCTAssertEqual(error?.description, "\(path): line 3: '5:abc' is not INDEX:VALUE")
    }

    func test_load_badLabel_namesLine() throws {
        let files = try TestFiles(self)
        let path = try files.write("a.svm", text: "x 1:1\n")
        let error = dataError { () throws(DataError) in try DataSource.libsvm(path: path, featureCount: nil).loadTrain()
        }
        XCTAssertEqual(error, DataError(file: path, location: "line 1", message: "label 'x' is not a number"))
    }

    func test_load_indexZero_isRejected() throws {
        let files = try TestFiles(self)
        let path = try files.write("a.svm", text: "1 0:1.5\n")
        let error = dataError { () throws(DataError) in try DataSource.libsvm(path: path, featureCount: nil).loadTrain()
        }
        XCTAssertEqual(
            error, DataError(file: path, location: "line 1", message: "index 0 in '0:1.5': indices start at 1"))
    }

    func test_load_nonIncreasingIndex_isRejected() throws {
        let files = try TestFiles(self)
        let path = try files.write("a.svm", text: "1 1:1\n1 5:1 3:1\n")
        let error = dataError { () throws(DataError) in try DataSource.libsvm(path: path, featureCount: nil).loadTrain()
        }
        XCTAssertEqual(
            error,
            DataError(file: path, location: "line 2", message: "index 3 in '3:1' does not increase (previous index 5)"))
    }

    func test_load_indexBeyondFeatureCount_isRejected() throws {
        let files = try TestFiles(self)
        let path = try files.write("a.svm", text: "1 9:1\n")
        let error = dataError { () throws(DataError) in try DataSource.libsvm(path: path, featureCount: 4).loadTrain() }
        XCTAssertEqual(
            error, DataError(file: path, location: "line 1", message: "index 9 in '9:1' exceeds the feature count 4"))
    }

    func test_loadSplits_dotTCompanion_isPaddedToTrainWidth() throws {
        let files = try TestFiles(self)
        let train = try files.write("a9a", text: "1 1:1 4:1\n0 2:1\n")
        try files.write("a9a.t", text: "1 2:3\n")
        let (trainSet, testSet) = try DataSource.libsvm(path: train, featureCount: nil).loadSplits()
        XCTAssertEqual(trainSet.featureCount, 4)
        XCTAssertEqual(testSet?.featureCount, 4)
        XCTAssertEqual(testSet?.features, [0, 3, 0, 0])
    }

    func test_loadSplits_widerTestSplit_isAFeatureCountMismatch() throws {
        let files = try TestFiles(self)
        let train = try files.write("b_train.svm", text: "1 1:1 4:1\n")
        let test = try files.write("b_test.svm", text: "1 6:3\n")
        let error = dataError { () throws(DataError) in try DataSource.libsvm(path: train, featureCount: nil).loadTest()
        }
        XCTAssertEqual(
            error,
            DataError(
                file: test,
                message: "feature count mismatch: the test split has 6 features, the train split \(train) has 4"))
    }
}
