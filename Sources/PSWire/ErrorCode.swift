/// The code an `error` or `reject` frame carries; unknown codes from newer peers are representable.
///
/// See proto-docs/protocol.md, "Error codes".
public struct ErrorCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The 16-bit code as it appears on the wire.
    public var rawValue: UInt16

    /// Wraps any code, known or not.
    public init(rawValue: UInt16) {
        self.rawValue = rawValue
    }

    /// The frame could not be parsed (bad magic, truncated, a field out of range, trailing bytes, bad UTF-8).
    public static let malformedFrame = ErrorCode(rawValue: 1)
    /// The header's version is not one this peer speaks.
    public static let unsupportedVersion = ErrorCode(rawValue: 2)
    /// The header's message type is not one this peer knows.
    public static let unknownMessageType = ErrorCode(rawValue: 3)
    /// The payload length exceeds the receiver's maximum.
    public static let frameTooLarge = ErrorCode(rawValue: 4)
    /// The answer to the handshake's challenge is wrong (wrong token), or the role may not make the request.
    public static let unauthorized = ErrorCode(rawValue: 5)
    /// A request arrived before the handshake.
    public static let handshakeRequired = ErrorCode(rawValue: 6)
    /// A request named a tensor the server does not hold.
    public static let unknownTensor = ErrorCode(rawValue: 7)
    /// A request named a shard the server does not own.
    public static let unknownShard = ErrorCode(rawValue: 8)
    /// An element count disagrees with the payload or with the shard's size.
    public static let lengthMismatch = ErrorCode(rawValue: 9)
    /// A gradient held NaN or infinity.
    public static let nonFinite = ErrorCode(rawValue: 10)
    /// A push or pull arrived before the model was registered.
    public static let notRegistered = ErrorCode(rawValue: 11)
    /// A registration disagrees with the one the server already holds.
    public static let registrationConflict = ErrorCode(rawValue: 12)
    /// The request is not valid in the job's current state.
    public static let invalidState = ErrorCode(rawValue: 13)
    /// A wait (barrier, staleness bound, checkpoint) ran past its deadline.
    public static let timeout = ErrorCode(rawValue: 14)
    /// The server is shutting down.
    public static let shuttingDown = ErrorCode(rawValue: 15)
    /// Data sets or configurations of the peers disagree.
    public static let dataMismatch = ErrorCode(rawValue: 16)
    /// Every worker rank is taken.
    public static let jobFull = ErrorCode(rawValue: 17)
    /// A checkpoint could not be written.
    public static let checkpointFailed = ErrorCode(rawValue: 18)
    /// A field holds a value the receiver refuses (an unknown role, an impossible shape, ...).
    public static let invalidArgument = ErrorCode(rawValue: 19)
    /// The receiver hit a bug of its own.
    public static let internalError = ErrorCode(rawValue: 20)
    /// The request would take more of a limited resource (memory, connections) than the receiver allows.
    public static let resourceExhausted = ErrorCode(rawValue: 21)

    /// Every code protocol v1 defines, in code order.
    public static let allKnown: [ErrorCode] = [
        .malformedFrame, .unsupportedVersion, .unknownMessageType, .frameTooLarge, .unauthorized,
        .handshakeRequired, .unknownTensor, .unknownShard, .lengthMismatch, .nonFinite, .notRegistered,
        .registrationConflict, .invalidState, .timeout, .shuttingDown, .dataMismatch, .jobFull, .checkpointFailed,
        .invalidArgument, .internalError, .resourceExhausted,
    ]

    private static let names = [
        "malformedFrame", "unsupportedVersion", "unknownMessageType", "frameTooLarge", "unauthorized",
        "handshakeRequired", "unknownTensor", "unknownShard", "lengthMismatch", "nonFinite", "notRegistered",
        "registrationConflict", "invalidState", "timeout", "shuttingDown", "dataMismatch", "jobFull",
        "checkpointFailed", "invalidArgument", "internalError", "resourceExhausted",
    ]

    /// Whether protocol v1 defines this code.
    public var isKnown: Bool { rawValue >= 1 && Int(rawValue) <= Self.names.count }

    /// The code's name (`frameTooLarge`), or `unknown(17000)`.
    public var name: String { isKnown ? Self.names[Int(rawValue) - 1] : "unknown(\(rawValue))" }

    /// The name and the number, e.g. `frameTooLarge (4)`.
    public var description: String { isKnown ? "\(name) (\(rawValue))" : name }
}

/// Why a frame, a header or a payload could not be decoded; each case names the numbers involved.
///
/// Every case maps to the `ErrorCode` a receiver sends back (`code`); see proto-docs/protocol.md, "Error codes".
public enum WireError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Fewer than 24 header bytes were available.
    case truncatedHeader(got: Int)
    /// The stream ended inside a payload.
    case truncatedBody(expected: Int, got: Int)
    /// The first four bytes are not "SWPS".
    case badMagic(UInt32)
    /// The header's version is not 1.
    case unsupportedVersion(UInt16)
    /// The payload length exceeds the receiver's maximum.
    case frameTooLarge(length: Int, maximum: Int)
    /// The message type is not defined in v1.
    case unknownMessageType(UInt16)
    /// The payload ends before a field it must hold.
    case payloadTooShort(type: MessageType, minimum: Int, got: Int)
    /// Bytes follow the payload's last field.
    case trailingBytes(type: MessageType, count: Int)
    /// A tensor message's `count` disagrees with the float bytes present.
    case elementCountMismatch(type: MessageType, declared: Int, actual: Int)
    /// A tensor message's float bytes are not a multiple of 4.
    case misalignedPayload(type: MessageType, floatBytes: Int)
    /// A string field is not valid UTF-8; `field` is qualified by the message name (`hello.name`).
    case invalidUTF8(field: String)
    /// A field holds a value outside its domain (an unknown role, a rank above 8, ...).
    case invalidField(type: MessageType, field: String, reason: String)

    /// The code an error frame answering this failure carries.
    public var code: ErrorCode {
        switch self {
        case .truncatedHeader, .truncatedBody, .badMagic, .payloadTooShort, .trailingBytes, .invalidUTF8:
            .malformedFrame
        case .unsupportedVersion: .unsupportedVersion
        case .frameTooLarge: .frameTooLarge
        case .unknownMessageType: .unknownMessageType
        case .elementCountMismatch, .misalignedPayload: .lengthMismatch
        case .invalidField: .invalidArgument
        }
    }

    /// A sentence naming the numbers, e.g. "push declares 3 floats but its payload carries 2".
    public var description: String {
        switch self {
        case .truncatedHeader(let got):
            "truncated frame header: got \(got) of \(WireProtocol.headerSize) bytes"
        case .truncatedBody(let expected, let got):
            "truncated frame body: expected \(expected) payload bytes, got \(got)"
        case .badMagic(let magic):
            "bad magic \(hex(magic)): expected \(hex(WireProtocol.magic)) (the bytes \"SWPS\")"
        case .unsupportedVersion(let version):
            "unsupported protocol version \(version): this peer speaks version \(WireProtocol.version)"
        case .frameTooLarge(let length, let maximum):
            "frame payload of \(length) bytes exceeds the maximum of \(maximum) bytes"
        case .unknownMessageType(let raw):
            "unknown message type \(hex(raw))"
        case .payloadTooShort(let type, let minimum, let got):
            "\(type.name) payload too short: needs at least \(minimum) bytes, got \(got)"
        case .trailingBytes(let type, let count):
            "\(type.name) payload has \(count) trailing bytes after its last field"
        case .elementCountMismatch(let type, let declared, let actual):
            "\(type.name) declares \(declared) floats but its payload carries \(actual)"
        case .misalignedPayload(let type, let floatBytes):
            "\(type.name) float data is \(floatBytes) bytes, not a multiple of 4"
        case .invalidUTF8(let field):
            "field '\(field)' is not valid UTF-8"
        case .invalidField(let type, let field, let reason):
            "\(type.name) field '\(field)' is invalid: \(reason)"
        }
    }
}
