package monitoring

import (
	"fmt"
	"regexp"
	"slices"
)

// A small PromQL tokenizer rather than Prometheus' parser, whose module
// would bring half of Prometheus into go.mod for one function. It
// removes what holds no metric name (strings, label matchers, ranges,
// grouping labels, Grafana variables), then takes every identifier that
// is not a function call, a keyword or a number.
var (
	promqlStrings  = regexp.MustCompile("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`")
	promqlMatchers = regexp.MustCompile(`\{[^}]*\}`)
	promqlRanges   = regexp.MustCompile(`\[[^\]]*\]`)
	promqlGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	// A variable's name starts with a letter or an underscore: $1 is a
	// capture group in label_replace's replacement, which Grafana, having
	// no variable of that name, passes on unchanged.
	grafanaVariable = regexp.MustCompile(`\$\{([A-Za-z_]\w*)\}|\$([A-Za-z_]\w*)`)
	// A number, or a duration outside brackets (offset 5m), starts with
	// a digit; an identifier never does.
	promqlToken = regexp.MustCompile(`\d[\w.]*|[a-zA-Z_:][\w:]*(\s*\()?`)
	promqlWords = []string{"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
		"group_left", "group_right", "inf", "nan", "atan2"}
)

// MetricNames are the metric names an expression selects, sorted, each
// once.
func MetricNames(expr string) []string {
	s := promqlStrings.ReplaceAllString(expr, " ")
	s = promqlMatchers.ReplaceAllString(s, " ")
	s = promqlRanges.ReplaceAllString(s, " ")
	s = promqlGrouping.ReplaceAllString(s, " ")
	s = grafanaVariable.ReplaceAllString(s, " ")
	var names []string
	for _, m := range promqlToken.FindAllStringSubmatch(s, -1) {
		token, call := m[0], m[1] != ""
		switch {
		case call, token[0] >= '0' && token[0] <= '9', slices.Contains(promqlWords, token):
		default:
			names = append(names, token)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// Expand replaces the Grafana variables of an expression ($name or
// ${name}) with their values. A variable without one is an error, so
// that a query using a new variable cannot pass unexpanded.
func Expand(expr string, values map[string]string) (string, error) {
	var missing []string
	out := grafanaVariable.ReplaceAllStringFunc(expr, func(v string) string {
		m := grafanaVariable.FindStringSubmatch(v)
		name := m[1] + m[2]
		value, ok := values[name]
		if !ok {
			missing = append(missing, name)
			return v
		}
		return value
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("no value for Grafana variable(s) %v in %q", missing, expr)
	}
	return out, nil
}
