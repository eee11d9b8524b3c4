import ArgumentParser

/// One setting of the command line, declared once: its flag, its environment variable, its
/// default, the values it allows and what it is for. Its help text, its reading from the
/// environment and its one validation all come from here (see ``Settings``); a flag wins over
/// the variable, the variable over the default.
struct Setting<Value: SettingValue>: Sendable {
    /// The long flag without its dashes, e.g. `batch-size`.
    var flag: String
    var environment: String
    /// `nil`: the setting is off unless given (``defaultText`` says so in the help).
    var defaultValue: Value?
    /// The default as the help shows it, when that is not the value itself ("active cores").
    var defaultText: String?
    var rule: Rule = .any
    /// What it is for, one or two sentences.
    var summary: String
    var valueName: String?

    enum Rule: Sendable {
        case any
        case nonEmpty
        /// From the lower bound to the upper one, both allowed.
        case range(ClosedRange<Value>)
        case atLeast(Value)
        /// Seconds: more than 0 (or 0 itself, meaning none) and at most `longest`.
        case seconds(longest: Value, zeroMeansNone: Bool)
    }

    var name: NameSpecification { .customLong(flag) }

    var help: ArgumentHelp {
        let shown = defaultText ?? defaultValue.map { $0.helpText }
        let allowed = allowedText.map { " Allowed: \($0)." } ?? ""
        return ArgumentHelp("\(summary)\(allowed) Env: \(environment).\(shown.map { " Default: \($0)." } ?? "")", valueName: valueName)
    }

    /// The values the rule allows, as the help says them.
    var allowedText: String? {
        switch rule {
        case .any, .nonEmpty: nil
        case .range(let range): "\(range.lowerBound.helpText) to \(range.upperBound.helpText)"
        case .atLeast(let lowest): "at least \(lowest.helpText)"
        case .seconds(let longest, let zeroMeansNone):
            zeroMeansNone ? "0 (none) to \(longest.helpText)" : "more than 0, at most \(longest.helpText)"
        }
    }

    /// The flag's value if given, else the environment variable's, else the default. A variable
    /// that is not a value of this kind is bad configuration (thrown); a value the rule refuses is
    /// named in `problems`, with every other mistake, and returned as it is.
    func resolve(_ given: Value?, problems: inout [String]) throws -> Value? {
        var value = given
        if value == nil, let text = Environment.value(environment) {
            guard let parsed = Value(settingText: text) else { throw CommandError.usage("\(environment)=\(text) is not \(Value.kindName)") }
            value = parsed
        }
        guard let value = value ?? defaultValue else { return nil }
        if let problem = problem(with: value) { problems.append(problem) }
        return value
    }

    /// ``resolve(_:problems:)`` for a setting with a default.
    func resolved(_ given: Value?, problems: inout [String]) throws -> Value {
        precondition(defaultValue != nil, "--\(flag) has no default")
        return try resolve(given, problems: &problems)!
    }

    /// What is wrong with `value` under the rule, in one line; `nil` when nothing is.
    func problem(with value: Value) -> String? {
        switch rule {
        case .any:
            return nil
        case .nonEmpty:
            return value.isEmptyText ? "--\(flag) must not be empty" : nil
        case .range(let range):
            return range.contains(value) ? nil : "--\(flag) must be \(range.lowerBound.helpText) to \(range.upperBound.helpText)"
        case .atLeast(let lowest):
            return value >= lowest ? nil : "--\(flag) must be at least \(lowest.helpText)"
        case .seconds(let longest, let zeroMeansNone):
            let zero = Value(settingText: "0")!
            if zeroMeansNone {
                return value >= zero && value <= longest ? nil : "--\(flag) must be 0 (none) or up to \(longest.helpText) seconds"
            }
            return value > zero && value <= longest ? nil : "--\(flag) must be more than 0 and at most \(longest.helpText) seconds"
        }
    }
}

/// What a ``Setting`` can hold: read from an environment variable's text, shown in help.
protocol SettingValue: Comparable, Sendable {
    init?(settingText: String)
    /// "a whole number", "a number", "text": for the message about a variable that is not one.
    static var kindName: String { get }
    var helpText: String { get }
    var isEmptyText: Bool { get }
}

extension Int: SettingValue {
    init?(settingText: String) { self.init(settingText) }
    static var kindName: String { "a whole number" }
    var helpText: String { String(self) }
    var isEmptyText: Bool { false }
}

extension Double: SettingValue {
    /// nan and infinity are not values of any setting (they used to crash start-up).
    init?(settingText: String) {
        guard let value = Double(settingText), value.isFinite else { return nil }
        self = value
    }
    static var kindName: String { "a number" }
    var helpText: String { rounded() == self && abs(self) < 1e15 ? String(Int(self)) : String(self) }
    var isEmptyText: Bool { false }
}

extension String: SettingValue {
    init?(settingText: String) { self = settingText }
    static var kindName: String { "text" }
    var helpText: String { self }
    var isEmptyText: Bool { isEmpty }
}
