package certs

import (
	"fmt"
	"net"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// ParseHosts reads --cert-hosts: comma-separated DNS names and IPs. An
// empty entry (a doubled or trailing comma) or a name no certificate can
// carry is an error, not something to skip: a host list that differs from
// what the certificate covers would re-issue it on every sync.
func ParseHosts(list string) ([]string, error) {
	var hosts []string
	for i, h := range strings.Split(list, ",") {
		h = strings.TrimSpace(h)
		switch {
		case h == "":
			return nil, fmt.Errorf("entry %d of %q is empty (a doubled or trailing comma?)", i+1, list)
		case net.ParseIP(h) != nil:
		case len(validation.IsDNS1123Subdomain(h)) > 0:
			return nil, fmt.Errorf("%q is neither an IP nor a DNS name: %s", h, strings.Join(validation.IsDNS1123Subdomain(h), "; "))
		}
		if !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	return hosts, nil
}
