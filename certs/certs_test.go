package certs

import (
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"
)

var (
	hosts = []string{"kpoguard.kpoguard.svc", "127.0.0.1"}
	life  = Lifetimes{CA: 100 * time.Hour, Serving: 10 * time.Hour}
)

func ensure(t *testing.T, b Bundle, hosts []string, now time.Time) Bundle {
	t.Helper()
	out, _, err := Ensure(b, hosts, life, now)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func servingOf(t *testing.T, b Bundle) *x509.Certificate {
	t.Helper()
	c, err := parseServing(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func casOf(t *testing.T, b Bundle) []*x509.Certificate {
	t.Helper()
	cas, _, err := parseCA(b)
	if err != nil {
		t.Fatal(err)
	}
	return cas
}

func TestEnsureLifecycle(t *testing.T) {
	t0 := time.Now()
	first, changed, err := Ensure(nil, hosts, life, t0)
	if err != nil || !changed {
		t.Fatalf("first Ensure: changed=%v err=%v", changed, err)
	}
	s0, ca0 := servingOf(t, first), casOf(t, first)[0]
	if err := s0.VerifyHostname("127.0.0.1"); err != nil {
		t.Errorf("IP host: %v", err)
	}
	if err := s0.VerifyHostname("kpoguard.kpoguard.svc"); err != nil {
		t.Errorf("DNS host: %v", err)
	}
	if s0.CheckSignatureFrom(ca0) != nil || !ca0.IsCA {
		t.Error("serving certificate not signed by the CA")
	}

	// Nothing is due: nothing changes.
	if _, changed, _ := Ensure(first, hosts, life, t0.Add(time.Hour)); changed {
		t.Error("renewed a fresh bundle")
	}

	// The serving certificate is due (8h of 10h gone): renewed by the same CA.
	second := ensure(t, first, hosts, t0.Add(8*time.Hour))
	s1, cas1 := servingOf(t, second), casOf(t, second)
	if s1.SerialNumber.Cmp(s0.SerialNumber) == 0 || len(cas1) != 1 || !cas1[0].Equal(ca0) || s1.CheckSignatureFrom(ca0) != nil {
		t.Error("serving renewal changed the CA or kept the old certificate")
	}

	// Another host: renewed at once.
	more := ensure(t, second, append(hosts, "kpoguard.kpoguard.svc.cluster.local"), t0.Add(9*time.Hour))
	if servingOf(t, more).VerifyHostname("kpoguard.kpoguard.svc.cluster.local") != nil {
		t.Error("new host not covered")
	}

	// The CA is due: a new CA joins, the old one stays trusted, and the
	// still-good serving certificate is kept.
	fresh := ensure(t, second, hosts, t0.Add(70*time.Hour)) // serving renewed by CA0, good until 80h
	due := ensure(t, fresh, hosts, t0.Add(71*time.Hour))    // CA0 has 29h of 100h left
	cas2 := casOf(t, due)
	if len(cas2) != 2 || !cas2[1].Equal(ca0) {
		t.Fatalf("after CA renewal: %d CAs, want the new and the old", len(cas2))
	}
	if !servingOf(t, due).Equal(servingOf(t, fresh)) {
		t.Error("a still-good serving certificate was replaced with the CA")
	}
	// Its own renewal moves the serving certificate to the new CA.
	moved := ensure(t, due, hosts, t0.Add(78*time.Hour))
	if servingOf(t, moved).CheckSignatureFrom(casOf(t, moved)[0]) != nil {
		t.Error("serving certificate not moved to the new CA at its renewal")
	}

	// Past the old CA's end it leaves the bundle.
	later := ensure(t, moved, hosts, t0.Add(101*time.Hour))
	for _, ca := range casOf(t, later) {
		if ca.Equal(ca0) {
			t.Error("expired CA still trusted")
		}
	}
}

func TestEnsureRepairsBrokenBundles(t *testing.T) {
	good := ensure(t, nil, hosts, time.Now())
	for name, b := range map[string]Bundle{
		"garbage CA":        {KeyCACert: []byte("x"), KeyCAKey: good[KeyCAKey], KeyTLSCert: good[KeyTLSCert], KeyTLSKey: good[KeyTLSKey]},
		"key of another CA": {KeyCACert: good[KeyCACert], KeyCAKey: ensure(t, nil, hosts, time.Now())[KeyCAKey]},
		"no serving pair":   {KeyCACert: good[KeyCACert], KeyCAKey: good[KeyCAKey]},
	} {
		out, changed, err := Ensure(b, hosts, life, time.Now())
		if err != nil || !changed {
			t.Errorf("%s: changed=%v err=%v", name, changed, err)
			continue
		}
		if servingOf(t, out).CheckSignatureFrom(casOf(t, out)[len(casOf(t, out))-1]) != nil && servingOf(t, out).CheckSignatureFrom(casOf(t, out)[0]) != nil {
			t.Errorf("%s: serving certificate not signed by a trusted CA", name)
		}
	}
}

// When the CA is renewed at the moment the serving certificate must be
// replaced too, the new serving certificate comes from the old CA, which
// the API server already trusts.
func TestCARenewalSignsNothingWithTheNewCA(t *testing.T) {
	t0 := time.Now()
	first := ensure(t, nil, hosts, t0)
	ca0 := casOf(t, first)[0]
	// At 75h the CA is due and the serving certificate long expired.
	out := ensure(t, first, hosts, t0.Add(75*time.Hour))
	serving := servingOf(t, out)
	if serving.CheckSignatureFrom(ca0) != nil {
		t.Error("the replacement serving certificate is not from the old CA")
	}
	if !serving.NotAfter.Before(ca0.NotAfter.Add(time.Second)) {
		t.Error("the serving certificate outlives the CA that signed it")
	}
}

// A serving key that does not match its certificate is replaced.
func TestMismatchedServingKeyReissued(t *testing.T) {
	a, b := ensure(t, nil, hosts, time.Now()), ensure(t, nil, hosts, time.Now())
	broken := Bundle{KeyCACert: a[KeyCACert], KeyCAKey: a[KeyCAKey], KeyTLSCert: a[KeyTLSCert], KeyTLSKey: b[KeyTLSKey]}
	out, changed, err := Ensure(broken, hosts, life, time.Now())
	if err != nil || !changed {
		t.Fatalf("changed=%v err=%v", changed, err)
	}
	if _, err := tls.X509KeyPair(out[KeyTLSCert], out[KeyTLSKey]); err != nil {
		t.Errorf("still mismatched: %v", err)
	}
}

// Merging bundles keeps every unexpired CA of both, the Secret's first, once.
func TestMergeBundles(t *testing.T) {
	now := time.Now()
	a := ensure(t, nil, hosts, now)[KeyCACert]
	b := ensure(t, nil, hosts, now)[KeyCACert]
	merged, err := decodeCerts(mergeBundles(a, append(append([]byte{}, b...), a...), now))
	if err != nil || len(merged) != 2 {
		t.Fatalf("merged %d CAs (%v), want 2", len(merged), err)
	}
	first, _ := decodeCerts(a)
	if !merged[0].Equal(first[0]) {
		t.Error("the Secret's CA is not first")
	}
	if got, _ := decodeCerts(mergeBundles(a, b, now.Add(200*time.Hour))); len(got) != 0 {
		t.Errorf("%d expired CAs kept", len(got))
	}
}
