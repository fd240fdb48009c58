package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation/field"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Policy is a loaded, validated policy document. It is immutable and safe
// for concurrent use; a new document means a new Policy.
type Policy struct {
	name      string
	hash      string
	scope     scope
	base      *RuleSet
	baseRaw   json.RawMessage
	overrides []override
	warnings  []string

	// merged caches the RuleSet of each combination of matching overrides.
	merged sync.Map // string -> mergeResult
}

type override struct {
	name       string
	namespaces []string
	selector   labels.Selector // nil when the override has none
	raw        json.RawMessage
}

type mergeResult struct {
	rules *RuleSet
	// names and errs describe an invalid combination of overrides.
	names string
	errs  field.ErrorList
}

// LoadError lists every problem found in a policy document, each with its
// field path.
type LoadError struct {
	Errs field.ErrorList
}

func (e *LoadError) Error() string {
	lines := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		lines[i] = "  - " + err.Error()
	}
	return fmt.Sprintf("invalid policy: %d error(s):\n%s", len(e.Errs), strings.Join(lines, "\n"))
}

// Load decodes a policy document from YAML or JSON strictly, applies the
// defaults and validates it. The error, when there is one, is a *LoadError
// naming every problem, or a syntax error.
func Load(data []byte) (*Policy, error) {
	jsonData, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, fmt.Errorf("policy is not valid YAML: %w", err)
	}
	if len(jsonData) == 0 || string(jsonData) == "null" {
		return nil, errors.New("policy is empty")
	}
	var doc Document
	strictErrs, err := kjson.UnmarshalStrict(jsonData, &doc)
	var errs field.ErrorList
	for _, se := range strictErrs {
		path := field.NewPath("")
		var fe kjson.FieldError
		if errors.As(se, &fe) {
			path = field.NewPath(fe.FieldPath())
		}
		errs = append(errs, field.Invalid(path, field.OmitValueType{}, se.Error()))
	}
	if err != nil {
		// A value of the wrong type leaves the rest undecoded: report it
		// with the strict errors and stop.
		var te *json.UnmarshalTypeError
		if !errors.As(err, &te) {
			return nil, fmt.Errorf("policy cannot be decoded: %w", err)
		}
		errs = append(errs, field.Invalid(field.NewPath(te.Field), field.OmitValueType{},
			fmt.Sprintf("a %s where a %s belongs", te.Value, jsonType(te.Type.Kind()))))
		return nil, &LoadError{Errs: errs}
	}
	if doc.APIVersion != APIVersion {
		errs = append(errs, field.NotSupported(field.NewPath("apiVersion"), doc.APIVersion, []string{APIVersion}))
	}
	if doc.Kind != Kind {
		errs = append(errs, field.NotSupported(field.NewPath("kind"), doc.Kind, []string{Kind}))
	}
	// The raw rules keep what the author wrote, so that overrides merge
	// over the document rather than over its defaults.
	var raw struct {
		Spec struct {
			Rules     json.RawMessage `json:"rules"`
			Overrides []struct {
				Rules json.RawMessage `json:"rules"`
			} `json:"overrides"`
		} `json:"spec"`
	}
	// Case-sensitive, like the strict decode, so both see the same overrides.
	if err := kjson.UnmarshalCaseSensitivePreserveInts(jsonData, &raw); err != nil || len(raw.Spec.Overrides) != len(doc.Spec.Overrides) {
		return nil, fmt.Errorf("policy cannot be decoded: %v", err)
	}

	p := &Policy{name: doc.Metadata.Name, baseRaw: orEmptyObject(raw.Spec.Rules)}
	specPath := field.NewPath("spec")
	var scopeErrs field.ErrorList
	p.scope, scopeErrs = compileScope(doc.Spec.Scope, specPath.Child("scope"))
	errs = append(errs, scopeErrs...)

	rulesPath := specPath.Child("rules")
	base, baseErrs := compileRules(doc.Spec.Rules, rulesPath)
	errs = append(errs, baseErrs...)
	p.base = base
	if len(baseErrs) == 0 {
		p.warnings = base.warnings(rulesPath)
	}

	for i, o := range doc.Spec.Overrides {
		path := specPath.Child("overrides").Index(i)
		ov, ovErrs := compileOverride(o, orEmptyObject(raw.Spec.Overrides[i].Rules), path)
		errs = append(errs, ovErrs...)
		p.overrides = append(p.overrides, ov)
		// Each override must give a valid rule set on its own; combinations
		// are checked when a namespace first needs them.
		if len(baseErrs) == 0 && len(ovErrs) == 0 {
			merged, mErrs := mergeRules(p.baseRaw, []json.RawMessage{ov.raw}, path.Child("rules"))
			errs = append(errs, mErrs...)
			if len(mErrs) == 0 {
				// Only what the override brings: the rest was said above.
				inherited := base.warnings(path.Child("rules"))
				for _, w := range merged.warnings(path.Child("rules")) {
					if !slices.Contains(inherited, w) {
						p.warnings = append(p.warnings, w)
					}
				}
			}
		}
	}
	if len(errs) > 0 {
		return nil, &LoadError{Errs: errs}
	}

	// The hash is of the document as written, re-encoded with sorted keys
	// and numbers as text: formatting, comments and `cpu: 1` for `cpu: "1"`
	// do not change it, but an empty list or a null, which change
	// behaviour, do.
	dec := json.NewDecoder(bytes.NewReader(jsonData))
	dec.UseNumber()
	var written any
	if err := dec.Decode(&written); err != nil {
		return nil, fmt.Errorf("policy cannot be decoded: %w", err)
	}
	canonical, err := json.Marshal(numbersAsText(written))
	if err != nil {
		return nil, fmt.Errorf("policy cannot be encoded: %w", err)
	}
	sum := sha256.Sum256(canonical)
	p.hash = hex.EncodeToString(sum[:])[:16]
	return p, nil
}

func numbersAsText(v any) any {
	switch t := v.(type) {
	case json.Number:
		return t.String()
	case map[string]any:
		for k, e := range t {
			t[k] = numbersAsText(e)
		}
	case []any:
		for i, e := range t {
			t[i] = numbersAsText(e)
		}
	}
	return v
}

func jsonType(k reflect.Kind) string {
	switch k {
	case reflect.Slice, reflect.Array:
		return "list"
	case reflect.Map, reflect.Struct:
		return "object"
	case reflect.Bool:
		return "boolean"
	case reflect.String:
		return "string"
	}
	return k.String()
}

func orEmptyObject(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 || string(raw) == "null" {
		return json.RawMessage("{}")
	}
	return raw
}

// Name is the policy's metadata.name.
func (p *Policy) Name() string { return p.name }

// Hash identifies the policy's content; formatting and comments do not
// change it.
func (p *Policy) Hash() string { return p.hash }

// Warnings lists what in a valid policy probably does not do what its
// author meant, each with its field path.
func (p *Policy) Warnings() []string { return p.warnings }

// UsesNamespaceLabels reports whether RulesFor needs the namespace's labels,
// so callers look them up only when an override selects by label.
func (p *Policy) UsesNamespaceLabels() bool {
	return slices.ContainsFunc(p.overrides, func(o override) bool { return o.selector != nil })
}

// Namespace is what the policy needs to know about a pod's namespace.
type Namespace struct {
	Name   string
	Labels map[string]string
}

// RulesFor returns the rules in force in a namespace. Overrides that match by
// label selector apply first, then those that match by name, each group in
// document order; a later override wins field by field.
func (p *Policy) RulesFor(ns Namespace) (*RuleSet, error) {
	var bySelector, byName []int
	for i, o := range p.overrides {
		switch {
		case slices.Contains(o.namespaces, ns.Name):
			byName = append(byName, i)
		case o.selector != nil && o.selector.Matches(labels.Set(ns.Labels)):
			bySelector = append(bySelector, i)
		}
	}
	order := append(bySelector, byName...)
	if len(order) == 0 {
		return p.base, nil
	}
	key := make([]string, len(order))
	for i, idx := range order {
		key[i] = strconv.Itoa(idx)
	}
	cacheKey := strings.Join(key, ",")
	r, ok := p.merged.Load(cacheKey)
	if !ok {
		patches := make([]json.RawMessage, len(order))
		names := make([]string, len(order))
		for i, idx := range order {
			patches[i] = p.overrides[idx].raw
			names[i] = p.overrides[idx].label(idx)
		}
		rules, errs := mergeRules(p.baseRaw, patches, field.NewPath("spec", "rules"))
		r = mergeResult{rules: rules, names: strings.Join(names, ", "), errs: errs}
		p.merged.Store(cacheKey, r)
	}
	m := r.(mergeResult)
	if len(m.errs) > 0 {
		return nil, fmt.Errorf("overrides %s together give invalid rules for namespace %q: %w", m.names, ns.Name, m.errs.ToAggregate())
	}
	return m.rules, nil
}

func (o override) label(idx int) string {
	if o.name != "" {
		return strconv.Quote(o.name)
	}
	return fmt.Sprintf("spec.overrides[%d]", idx)
}

func compileOverride(o OverrideSpec, raw json.RawMessage, path *field.Path) (override, field.ErrorList) {
	var errs field.ErrorList
	ov := override{name: o.Name, namespaces: o.Namespaces, raw: raw}
	if len(o.Namespaces) == 0 && o.NamespaceSelector == nil {
		errs = append(errs, field.Required(path, "an override needs namespaces, a namespaceSelector, or both"))
	}
	if o.NamespaceSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(o.NamespaceSelector)
		if err != nil {
			errs = append(errs, field.Invalid(path.Child("namespaceSelector"), o.NamespaceSelector, err.Error()))
		}
		ov.selector = sel
	}
	return ov, errs
}

// mergeRules applies JSON merge patches over the base rules and compiles the
// result.
func mergeRules(base json.RawMessage, patches []json.RawMessage, path *field.Path) (*RuleSet, field.ErrorList) {
	var doc any
	if err := json.Unmarshal(base, &doc); err != nil {
		return nil, field.ErrorList{field.InternalError(path, err)}
	}
	for _, raw := range patches {
		var patch any
		if err := json.Unmarshal(raw, &patch); err != nil {
			return nil, field.ErrorList{field.InternalError(path, err)}
		}
		doc = mergePatch(doc, patch)
	}
	merged, err := json.Marshal(doc)
	if err != nil {
		return nil, field.ErrorList{field.InternalError(path, err)}
	}
	var spec RulesSpec
	if err := json.Unmarshal(merged, &spec); err != nil {
		return nil, field.ErrorList{field.Invalid(path, string(merged), err.Error())}
	}
	return compileRules(spec, path)
}

// mergePatch implements RFC 7386: objects merge key by key, null deletes a
// key, anything else replaces.
func mergePatch(target, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	t, ok := target.(map[string]any)
	if !ok {
		t = map[string]any{}
	}
	out := make(map[string]any, len(t)+len(p))
	for k, v := range t {
		out[k] = v
	}
	for k, v := range p {
		if v == nil {
			delete(out, k)
			continue
		}
		out[k] = mergePatch(out[k], v)
	}
	return out
}
