package certs

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"slices"
	"strings"
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

// Merging bundles keeps every unexpired CA of both, the Secret's first,
// once; a block that is not a certificate costs only itself.
func TestMergeBundles(t *testing.T) {
	now := time.Now()
	a := ensure(t, nil, hosts, now)[KeyCACert]
	b := ensure(t, nil, hosts, now)[KeyCACert]
	caA, _ := decodeCerts(a)
	caB, _ := decodeCerts(b)
	garbage := []byte("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n")
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, tc := range []struct {
		name          string
		first, second []byte
		drop          []byte
		at            time.Time
		want          []*x509.Certificate
		bad           int
	}{
		{name: "the Secret's CA first, each once", first: a, second: cat(b, a), at: now, want: []*x509.Certificate{caA[0], caB[0]}},
		{name: "expired CAs leave", first: a, second: b, at: now.Add(200 * time.Hour)},
		{name: "a bad block leaves, the good ones stay", first: a, second: cat(garbage, b), at: now, want: []*x509.Certificate{caA[0], caB[0]}, bad: 1},
		{name: "an empty bundle gets the Secret's CA", first: a, at: now, want: caA},
		{name: "dropped CAs leave", first: a, second: b, drop: b, at: now, want: caA},
		{name: "dropped CAs are not added back", first: cat(a, b), drop: b, at: now, want: caA},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, bad := mergeBundles(tc.first, tc.second, tc.drop, tc.at)
			got, err := decodeCerts(out)
			if err != nil || bad != tc.bad {
				t.Fatalf("merged bundle: %v; %d bad blocks, want %d", err, bad, tc.bad)
			}
			if !slices.EqualFunc(got, tc.want, (*x509.Certificate).Equal) {
				t.Errorf("got %d CAs, want %d (or another order)", len(got), len(tc.want))
			}
		})
	}
}

// Certificates are backdated by an hour, so an API server whose clock is
// 90 seconds (or 59 minutes) behind kpoguard's accepts a fresh one; the
// minute they used to be backdated by was not enough.
func TestFreshCertificatesSurviveClockSkew(t *testing.T) {
	now := time.Now()
	b := ensure(t, nil, hosts, now)
	serving, ca := servingOf(t, b), casOf(t, b)[0]
	for _, c := range []*x509.Certificate{serving, ca} {
		if c.NotBefore.After(now.Add(-time.Hour)) {
			t.Errorf("%s valid from %v, want at least an hour before %v", c.Subject.CommonName, c.NotBefore, now)
		}
	}
	for _, behind := range []time.Duration{90 * time.Second, 59 * time.Minute} {
		if !Trusts(b[KeyCACert], b[KeyTLSCert], now.Add(-behind)) {
			t.Errorf("a verifier %v behind refuses the fresh certificate", behind)
		}
	}
	if Trusts(b[KeyCACert], b[KeyTLSCert], now.Add(-61*time.Minute)) {
		t.Error("a verifier 61 minutes behind accepts it: the backdating is not an hour")
	}
}

// Renewal counts the certificate's life without the backdating: a 10-hour
// certificate is due with 3 hours left, not 3h18m.
func TestRenewalDueIgnoresBackdating(t *testing.T) {
	now := time.Now()
	serving := servingOf(t, ensure(t, nil, hosts, now))
	if due := RenewalDue(serving); due.Sub(now.Add(7*time.Hour)).Abs() > time.Second {
		t.Errorf("renewal due %v after issue, want 7h", due.Sub(now))
	}
	for _, tc := range []struct {
		after time.Duration
		due   bool
	}{{6*time.Hour + 50*time.Minute, false}, {7*time.Hour + 10*time.Minute, true}} {
		if got := needsRenewal(serving, now.Add(tc.after)); got != tc.due {
			t.Errorf("%v after issue: due %v, want %v", tc.after, got, tc.due)
		}
	}
}

// A rotation replaces the CA and the serving certificate at once, and
// retires every CA trusted before; renewals keep the retired ones until
// they expire.
func TestRotateCA(t *testing.T) {
	now := time.Now()
	before := ensure(t, nil, hosts, now)
	rotated, err := RotateCA(before, hosts, life, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if cas := casOf(t, rotated); len(cas) != 1 || cas[0].Equal(casOf(t, before)[0]) {
		t.Fatalf("after rotation %d CAs, or the old one", len(cas))
	}
	if !Trusts(rotated[KeyCACert], rotated[KeyTLSCert], now.Add(time.Hour)) {
		t.Error("the new CA does not sign the new serving certificate")
	}
	if Trusts(before[KeyCACert], rotated[KeyTLSCert], now.Add(time.Hour)) {
		t.Error("the old CA verifies the new serving certificate")
	}
	retired, _ := decodeCerts(rotated[KeyRetiredCAs])
	if len(retired) != 1 || !retired[0].Equal(casOf(t, before)[0]) {
		t.Fatalf("retired %d CAs, want the old one", len(retired))
	}
	// A later serving renewal keeps the retired CA listed.
	renewed := ensure(t, rotated, hosts, now.Add(9*time.Hour))
	if !bytes.Equal(renewed[KeyRetiredCAs], rotated[KeyRetiredCAs]) || bytes.Equal(renewed[KeyTLSCert], rotated[KeyTLSCert]) {
		t.Error("the renewal dropped the retired CAs or kept the serving certificate")
	}
	// A second rotation retires both.
	again, err := RotateCA(rotated, hosts, life, now.Add(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if retired, _ := decodeCerts(again[KeyRetiredCAs]); len(retired) != 2 {
		t.Errorf("second rotation retired %d CAs, want 2", len(retired))
	}
}

func TestTrusts(t *testing.T) {
	now := time.Now()
	b, other := ensure(t, nil, hosts, now), ensure(t, nil, hosts, now)
	for _, tc := range []struct {
		name            string
		bundle, serving []byte
		at              time.Time
		want            bool
	}{
		{name: "its CA", bundle: b[KeyCACert], serving: b[KeyTLSCert], at: now, want: true},
		{name: "its CA among others", bundle: bytes.Join([][]byte{other[KeyCACert], []byte("junk\n"), b[KeyCACert]}, nil), serving: b[KeyTLSCert], at: now, want: true},
		{name: "another CA", bundle: other[KeyCACert], serving: b[KeyTLSCert], at: now},
		{name: "no bundle", serving: b[KeyTLSCert], at: now},
		{name: "no certificate", bundle: b[KeyCACert], at: now},
		{name: "expired", bundle: b[KeyCACert], serving: b[KeyTLSCert], at: now.Add(11 * time.Hour)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Trusts(tc.bundle, tc.serving, tc.at); got != tc.want {
				t.Errorf("Trusts = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestParseHosts(t *testing.T) {
	for _, tc := range []struct {
		list string
		want []string
		err  string
	}{
		{list: "kpoguard.kpoguard.svc,127.0.0.1", want: []string{"kpoguard.kpoguard.svc", "127.0.0.1"}},
		{list: " a.svc , b.svc ,a.svc", want: []string{"a.svc", "b.svc"}},
		{list: "::1", want: []string{"::1"}},
		{list: "a.svc,", err: "entry 2"},
		{list: "a.svc,,b.svc", err: "empty"},
		{list: "", err: "empty"},
		{list: "a.svc,Not_A_Name", err: `"Not_A_Name" is neither`},
		{list: "https://a.svc", err: "neither an IP nor a DNS name"},
	} {
		t.Run(tc.list, func(t *testing.T) {
			got, err := ParseHosts(tc.list)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one with %q", err, tc.err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
