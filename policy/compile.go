package policy

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

type scope struct {
	taskPods         labels.Selector
	exemptNamespaces []string
	exemptUsers      []string
	exemptGroups     []string
}

func compileScope(s ScopeSpec, path *field.Path) (scope, field.ErrorList) {
	setScopeDefaults(&s)
	var errs field.ErrorList
	sel, err := metav1.LabelSelectorAsSelector(s.TaskPodSelector)
	if err != nil {
		errs = append(errs, field.Invalid(path.Child("taskPodSelector"), s.TaskPodSelector, err.Error()))
	}
	return scope{
		taskPods:         sel,
		exemptNamespaces: s.ExemptNamespaces,
		exemptUsers:      s.ExemptUsers,
		exemptGroups:     s.ExemptGroups,
	}, errs
}

// compileRules applies the defaults, then checks and types every field,
// each rule's section by its compile step in table order; a step may read
// the sections compiled before it.
func compileRules(spec RulesSpec, path *field.Path) (*RuleSet, field.ErrorList) {
	setRuleDefaults(&spec)
	c := compiler{}
	rs := &RuleSet{}
	for _, r := range ruleTable {
		r.compile(&c, &spec, rs, path)
	}
	return rs, c.errs
}

func compileNodePool(c *compiler, spec *RulesSpec, rs *RuleSet, rules *field.Path) {
	p := rules.Child("nodePool")
	rs.NodePool = c.nodePool(spec.NodePool, p)
	// ephemeralStorage, compiled before, may name only these queues.
	ap := rules.Child("ephemeralStorage", "allowedQueues")
	for i, q := range rs.EphemeralStorage.AllowedQueues {
		if _, ok := rs.NodePool.Queues[q]; !ok {
			c.add(field.Invalid(ap.Index(i), q, "must name one of nodePool.queues"))
		}
	}
}

func (c *compiler) nodePool(np NodePoolSpec, p *field.Path) NodePoolConfig {
	cfg := NodePoolConfig{
		Mode:          c.mode(np.Mode, p.Child("mode")),
		DefaultQueue:  np.DefaultQueue,
		QueueLabel:    np.QueueLabel,
		AllowNodeName: *np.AllowNodeName,
		Queues:        np.Queues,
	}
	cfg.Parent = c.parent(np, p)
	if np.DefaultQueue != "" {
		if _, ok := np.Queues[np.DefaultQueue]; !ok {
			c.add(field.Invalid(p.Child("defaultQueue"), np.DefaultQueue, "must name one of the queues"))
		}
	}
	if np.QueueLabel != "" {
		c.labelKey(np.QueueLabel, p.Child("queueLabel"))
	}
	for _, name := range sortedKeys(np.Queues) {
		q := np.Queues[name]
		qp := p.Child("queues").Key(name)
		if len(q.NodeSelector) == 0 && len(q.Tolerations) == 0 && len(q.MatchExpressions) == 0 {
			c.add(field.Required(qp, "a queue needs a nodeSelector, tolerations or matchExpressions"))
		}
		for k := range q.NodeSelector {
			for _, msg := range validation.IsQualifiedName(k) {
				c.add(field.Invalid(qp.Child("nodeSelector").Key(k), k, msg))
			}
		}
		for i, t := range q.Tolerations {
			if t.Operator == corev1.TolerationOpExists && t.Value != "" {
				c.add(field.Invalid(qp.Child("tolerations").Index(i).Child("value"), t.Value, "must be empty when operator is Exists"))
			}
		}
		for i, e := range q.MatchExpressions {
			ep := qp.Child("matchExpressions").Index(i)
			switch e.Operator {
			case corev1.NodeSelectorOpIn, corev1.NodeSelectorOpNotIn:
				if len(e.Values) == 0 {
					c.add(field.Required(ep.Child("values"), "In and NotIn need values"))
				}
			case corev1.NodeSelectorOpExists, corev1.NodeSelectorOpDoesNotExist:
				if len(e.Values) > 0 {
					c.add(field.Invalid(ep.Child("values"), e.Values, "Exists and DoesNotExist take no values"))
				}
			case corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt:
				if _, err := strconv.ParseInt(strings.Join(e.Values, ""), 10, 64); len(e.Values) != 1 || err != nil {
					c.add(field.Invalid(ep.Child("values"), e.Values, "Gt and Lt take one integer value"))
				}
			default:
				c.add(field.NotSupported(ep.Child("operator"), e.Operator, []string{"In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"}))
			}
		}
	}
	return cfg
}

// compiler collects every error instead of stopping at the first.
type compiler struct {
	errs field.ErrorList
}

func (c *compiler) add(err *field.Error) { c.errs = append(c.errs, err) }

func (c *compiler) mode(m Mode, p *field.Path) Mode {
	if !slices.Contains(modes, m) {
		c.add(field.NotSupported(p, m, modes))
	}
	return m
}

func (c *compiler) resourceName(r corev1.ResourceName, p *field.Path) {
	for _, msg := range validation.IsQualifiedName(string(r)) {
		c.add(field.Invalid(p, r, msg))
	}
}

// hugeExponent matches a decimal exponent of four digits or more, which
// resource.ParseQuantity takes seconds or more to parse (1e-999999999).
var hugeExponent = regexp.MustCompile(`[eE][+-]?[0-9]{4,}$`)

func (c *compiler) quantity(a Amount, p *field.Path) (resource.Quantity, bool) {
	if hugeExponent.MatchString(string(a)) {
		c.add(field.Invalid(p, string(a), "exponents of four digits or more are not accepted"))
		return resource.Quantity{}, false
	}
	q, err := resource.ParseQuantity(string(a))
	if err != nil {
		c.add(field.Invalid(p, string(a), "not a quantity: "+err.Error()))
		return q, false
	}
	if q.Sign() < 0 {
		c.add(field.Invalid(p, string(a), "must not be negative"))
		return q, false
	}
	if !saneQuantity(q) {
		c.add(field.Invalid(p, string(a), fmt.Sprintf("quantities of 1e%d or more are not accepted", maxDecimalDigits)))
		return q, false
	}
	return q, true
}

func (c *compiler) optionalQuantity(a Amount, p *field.Path) *resource.Quantity {
	if a == "" {
		return nil
	}
	if q, ok := c.quantity(a, p); ok {
		return &q
	}
	return nil
}

func (c *compiler) list(amounts ResourceAmounts, p *field.Path) corev1.ResourceList {
	if len(amounts) == 0 {
		return nil
	}
	out := corev1.ResourceList{}
	for _, name := range sortedKeys(amounts) {
		c.resourceName(name, p.Key(string(name)))
		if q, ok := c.quantity(amounts[name], p.Key(string(name))); ok {
			out[name] = q
		}
	}
	return out
}

func (c *compiler) requirements(r ResourcesSpec, p *field.Path) corev1.ResourceRequirements {
	req := corev1.ResourceRequirements{
		Requests: c.list(r.Requests, p.Child("requests")),
		Limits:   c.list(r.Limits, p.Child("limits")),
	}
	for _, name := range sortedKeys(req.Requests) {
		request := req.Requests[name]
		if limit, ok := req.Limits[name]; ok && request.Cmp(limit) > 0 {
			c.add(field.Invalid(p.Child("requests").Key(string(name)), request.String(),
				fmt.Sprintf("must not exceed the limit %s", limit.String())))
		}
	}
	return req
}

// defaultsWithinMax refuses a default pod size that max-resources would
// deny: every task pod without resources would be refused.
func (c *compiler) defaultsWithinMax(dr DefaultResourcesConfig, mr MaxResourcesConfig, path *field.Path) {
	check := func(list corev1.ResourceList, p *field.Path) {
		for _, name := range sortedKeys(list) {
			value := list[name]
			for _, max := range []struct {
				list corev1.ResourceList
				path *field.Path
			}{{mr.Container, path.Child("maxResources", "container")}, {mr.Pod, path.Child("maxResources", "pod")}} {
				if m, ok := max.list[name]; ok && value.Cmp(m) > 0 {
					c.add(field.Invalid(p.Key(string(name)), value.String(),
						fmt.Sprintf("default exceeds the maximum %s set at %s", m.String(), max.path.Key(string(name)))))
				}
			}
		}
	}
	p := path.Child("defaultResources")
	check(dr.Default.Requests, p.Child("requests"))
	check(dr.Default.Limits, p.Child("limits"))
	for _, name := range sortedKeys(dr.Containers) {
		cp := p.Child("containers").Key(name)
		check(dr.Containers[name].Requests, cp.Child("requests"))
		check(dr.Containers[name].Limits, cp.Child("limits"))
	}
}

func (c *compiler) dnsSubdomain(name string, p *field.Path) {
	for _, msg := range validation.IsDNS1123Subdomain(name) {
		c.add(field.Invalid(p, name, msg))
	}
}

func sortedKeys[K ~string, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	return keys
}

// Lookup timeouts: long enough for a cold lookup, short enough to leave the
// API server's webhook timeout room for everything else.
const (
	minLookupTimeout = 100 * time.Millisecond
	maxLookupTimeout = 10 * time.Second
)

func (c *compiler) lookupTimeout(s string, p *field.Path) time.Duration {
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		c.add(field.Invalid(p, s, "must be a duration such as 2s or 500ms"))
	case d < minLookupTimeout || d > maxLookupTimeout:
		c.add(field.Invalid(p, s, fmt.Sprintf("must be between %v and %v", minLookupTimeout, maxLookupTimeout)))
	}
	return d
}

func (c *compiler) trustedImages(patterns []string, p *field.Path) {
	for i, pat := range patterns {
		prefix, isPrefix := strings.CutSuffix(pat, "/*")
		host, _, _ := strings.Cut(prefix, "/")
		// A tag would be ignored: its repository's every tag trusted.
		tagged := strings.Contains(prefix[strings.LastIndex(prefix, "/")+1:], ":") && (!isPrefix || strings.Contains(prefix, "/"))
		if prefix == "" || strings.ContainsAny(prefix, "*?[]@ ") || tagged || isPrefix && !looksLikeHost(host) {
			c.add(field.Invalid(p.Index(i), pat, "must be a repository without a tag, or a registry host and path prefix ending in /*, such as registry.internal/platform/*"))
		}
	}
}

// registryHost is a registry host as image references name it, lower
// case, with an optional port; mirrorPath is a host and optional path.
var (
	registryHost = regexp.MustCompile(`^(localhost|[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*)(:[0-9]{1,5})?$`)
	pathPart     = regexp.MustCompile(`^[a-z0-9]+([._-][a-z0-9]+)*$`)
)

func validMirror(m string) bool {
	host, path, _ := strings.Cut(m, "/")
	if !registryHost.MatchString(host) {
		return false
	}
	if path == "" {
		return !strings.HasSuffix(m, "/")
	}
	for _, part := range strings.Split(path, "/") {
		if !pathPart.MatchString(part) {
			return false
		}
	}
	return true
}

func (c *compiler) registries(regs []RegistrySpec, p *field.Path) {
	names, hosts := map[string]bool{}, map[string]bool{}
	for i, r := range regs {
		rp := p.Index(i)
		switch {
		case r.Name == "":
			c.add(field.Required(rp.Child("name"), "names the registry in metrics"))
		case len(validation.IsDNS1123Label(r.Name)) > 0 || r.Name == "other":
			c.add(field.Invalid(rp.Child("name"), r.Name, "must be a DNS label other than \"other\", such as dockerhub"))
		case names[r.Name]:
			c.add(field.Duplicate(rp.Child("name"), r.Name))
		}
		names[r.Name] = true
		host := normalizeHost(r.Host)
		switch {
		case !registryHost.MatchString(r.Host):
			c.add(field.Invalid(rp.Child("host"), r.Host, "must be a lower-case registry host, optionally with a port, such as docker.io or registry.internal:5000"))
		case hosts[host]:
			c.add(field.Duplicate(rp.Child("host"), r.Host))
		}
		hosts[host] = true
		if r.Mirror != "" && !validMirror(r.Mirror) {
			c.add(field.Invalid(rp.Child("mirror"), r.Mirror, "must be a lower-case host, optionally with a port and a path prefix, such as mirror.internal/dockerhub"))
		}
	}
}
