// Package certs lets kpoguard run without cert-manager: it keeps a CA and a
// serving certificate in a Secret, renews them before they expire, writes
// the serving pair where the webhook server reads it, and keeps the CA in
// the webhook configurations' caBundle.
//
// Replicas share the Secret and never fight over it: every write carries
// the resourceVersion it was read at, and a replica that loses the race
// reads the winner's result. The CA outlives many serving certificates, so
// an ordinary renewal changes nothing the API server trusts; when the CA
// itself is renewed, the new CA joins the bundle next to the old one, and
// serving certificates from it are issued only at the next renewal, once
// the bundle carrying it is in place. A rotation asked for on the Secret
// (key compromise) replaces the CA at once instead; the Manager serves
// nothing the live caBundle does not trust, and drops the replaced CAs from
// it once every replica has had time to move.
package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"time"
)

// Keys of the Secret.
const (
	KeyCACert  = "ca.crt" // every CA still trusted, newest first
	KeyCAKey   = "ca.key" // the newest CA's key
	KeyTLSCert = "tls.crt"
	KeyTLSKey  = "tls.key"
	// KeyRetiredCAs holds the CAs a rotation replaced: they leave the
	// webhook configurations' caBundle Manager.RetireAfter after the
	// rotation, and are never added back.
	KeyRetiredCAs = "retired-ca.crt"
	minRemaining  = 0.3 // renew when less than 30% of a certificate's life is left
)

// Lifetimes of the CA and of serving certificates.
type Lifetimes struct {
	CA      time.Duration
	Serving time.Duration
}

// Bundle is the content of the Secret.
type Bundle map[string][]byte

// Ensure returns the bundle to store: b itself when it is valid for hosts
// until well before now+lifetime, or a renewed copy. The second result
// says whether anything changed.
func Ensure(b Bundle, hosts []string, life Lifetimes, now time.Time) (Bundle, bool, error) {
	out, changed, err := ensureBundle(b, hosts, life, now)
	if err == nil && changed {
		if retired, _ := decodeGoodCerts(b[KeyRetiredCAs]); len(unexpired(retired, now)) > 0 {
			out[KeyRetiredCAs] = encodeCerts(unexpired(retired, now))
		}
	}
	return out, changed, err
}

// RotateCA replaces the CA at once, for a suspected key compromise: a new
// CA signs a new serving certificate, and every CA trusted so far is
// retired. The caller serves the new certificate only once the API server
// trusts the new CA, and drops the retired ones from the caBundle only once
// every replica serves it.
func RotateCA(b Bundle, hosts []string, life Lifetimes, now time.Time) (Bundle, error) {
	ca, key, err := newCA(life.CA, now)
	if err != nil {
		return nil, err
	}
	cert, certKey, err := newServing(ca, key, hosts, life.Serving, now)
	if err != nil {
		return nil, err
	}
	old, _ := decodeGoodCerts(b[KeyCACert])
	retired, _ := decodeGoodCerts(b[KeyRetiredCAs])
	out := Bundle{KeyCACert: encodeCerts([]*x509.Certificate{ca}), KeyCAKey: encodeKey(key), KeyTLSCert: cert, KeyTLSKey: certKey}
	if r := unexpired(append(old, retired...), now); len(r) > 0 {
		out[KeyRetiredCAs] = encodeCerts(r)
	}
	return out, nil
}

func ensureBundle(b Bundle, hosts []string, life Lifetimes, now time.Time) (Bundle, bool, error) {
	cas, caKey, err := parseCA(b)
	if err != nil || len(cas) == 0 || needsRenewal(cas[0], now) {
		// A new CA joins the trusted ones but signs nothing yet: the API
		// server may not trust it for a while. A serving certificate that
		// must be replaced now is signed by the old CA while it is valid.
		ca, key, err := newCA(life.CA, now)
		if err != nil {
			return nil, false, err
		}
		trusted := append([]*x509.Certificate{ca}, unexpired(cas, now)...)
		out := Bundle{KeyCAKey: encodeKey(key), KeyCACert: encodeCerts(trusted)}
		if serving, err := parseServing(b); err == nil && len(cas) > 0 && good(serving, b, trusted, hosts, now) {
			out[KeyTLSCert], out[KeyTLSKey] = b[KeyTLSCert], b[KeyTLSKey]
			return out, true, nil
		}
		signer, signerKey := ca, key
		if caKey != nil && now.Before(cas[0].NotAfter) {
			signer, signerKey = cas[0], caKey
		}
		cert, certKey, err := newServing(signer, signerKey, hosts, life.Serving, now)
		if err != nil {
			return nil, false, err
		}
		out[KeyTLSCert], out[KeyTLSKey] = cert, certKey
		return out, true, nil
	}
	serving, err := parseServing(b)
	if err == nil && good(serving, b, cas, hosts, now) {
		if len(unexpired(cas, now)) == len(cas) {
			return b, false, nil
		}
		out := Bundle{KeyCACert: encodeCerts(unexpired(cas, now)), KeyCAKey: b[KeyCAKey], KeyTLSCert: b[KeyTLSCert], KeyTLSKey: b[KeyTLSKey]}
		return out, true, nil // an expired CA leaves the bundle
	}
	cert, certKey, err := newServing(cas[0], caKey, hosts, life.Serving, now)
	if err != nil {
		return nil, false, err
	}
	out := Bundle{KeyCACert: encodeCerts(unexpired(cas, now)), KeyCAKey: b[KeyCAKey], KeyTLSCert: cert, KeyTLSKey: certKey}
	return out, true, nil
}

// clockSkew backdates certificates, so an API server whose clock is
// behind kpoguard's still accepts them: NTP-less nodes and VMs resumed from
// a pause drift by minutes, not seconds. Renewal counts a certificate's
// life without it.
const clockSkew = time.Hour

func needsRenewal(c *x509.Certificate, now time.Time) bool {
	return now.After(RenewalDue(c))
}

// RenewalDue is when a certificate kpoguard issued has 30% of its life
// left, the backdating not counted.
func RenewalDue(c *x509.Certificate) time.Time {
	life := c.NotAfter.Sub(c.NotBefore) - clockSkew
	return c.NotAfter.Add(-time.Duration(float64(life) * minRemaining))
}

func coversHosts(c *x509.Certificate, hosts []string) bool {
	for _, h := range hosts {
		if c.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

// good reports whether a serving certificate can stay: its key matches,
// not due for renewal, valid for every host, and signed by a CA still
// trusted. It may
// be signed by an older CA than the newest: it moves to the newest at its
// own renewal, once the bundle with the newest CA has reached the API
// server.
func good(c *x509.Certificate, b Bundle, cas []*x509.Certificate, hosts []string, now time.Time) bool {
	if _, err := tls.X509KeyPair(b[KeyTLSCert], b[KeyTLSKey]); err != nil {
		return false // no key, or not this certificate's
	}
	return !needsRenewal(c, now) && coversHosts(c, hosts) &&
		slices.ContainsFunc(unexpired(cas, now), func(ca *x509.Certificate) bool { return c.CheckSignatureFrom(ca) == nil })
}

func unexpired(cas []*x509.Certificate, now time.Time) []*x509.Certificate {
	return slices.DeleteFunc(slices.Clone(cas), func(c *x509.Certificate) bool { return !now.Before(c.NotAfter) })
}

func parseCA(b Bundle) ([]*x509.Certificate, *ecdsa.PrivateKey, error) {
	cas, err := decodeCerts(b[KeyCACert])
	if err != nil {
		return nil, nil, err
	}
	block, _ := pem.Decode(b[KeyCAKey])
	if block == nil {
		return nil, nil, errors.New("no CA key")
	}
	key, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		return nil, nil, err
	}
	if len(cas) == 0 || !cas[0].PublicKey.(*ecdsa.PublicKey).Equal(&key.PublicKey) {
		return nil, nil, errors.New("the CA key does not match the newest CA")
	}
	return cas, key, nil
}

func parseServing(b Bundle) (*x509.Certificate, error) {
	certs, err := decodeCerts(b[KeyTLSCert])
	if err != nil || len(certs) == 0 {
		return nil, errors.New("no serving certificate")
	}
	return certs[0], nil
}

// keyAndSerial makes a certificate's key pair and a random serial number.
func keyAndSerial() (*ecdsa.PrivateKey, *big.Int, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return key, sn, err
}

func newCA(life time.Duration, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, sn, err := keyAndSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: "kpoguard-ca"},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(life),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	ca, err := x509.ParseCertificate(der)
	return ca, key, err
}

func newServing(ca *x509.Certificate, caKey *ecdsa.PrivateKey, hosts []string, life time.Duration, now time.Time) ([]byte, []byte, error) {
	key, sn, err := keyAndSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: hosts[0]},
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     minTime(now.Add(life), ca.NotAfter),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), encodeKey(key), nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func encodeKey(key *ecdsa.PrivateKey) []byte {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		panic(fmt.Sprintf("marshalling a freshly generated key: %v", err))
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

func encodeCerts(certs []*x509.Certificate) []byte {
	var buf bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return buf.Bytes()
}

// decodeGoodCerts is every certificate in data that parses, and how many
// blocks did not: one bad block in a caBundle must not cost the good ones.
func decodeGoodCerts(data []byte) ([]*x509.Certificate, int) {
	var out []*x509.Certificate
	bad := 0
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return out, bad
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil || block.Type != "CERTIFICATE" {
			bad++
			continue
		}
		out = append(out, c)
	}
}

// Trusts reports whether the PEM bundle verifies the first certificate of
// servingPEM for server authentication at now.
func Trusts(bundle, servingPEM []byte, now time.Time) bool {
	roots, _ := decodeGoodCerts(bundle)
	serving, _ := decodeGoodCerts(servingPEM)
	if len(roots) == 0 || len(serving) == 0 {
		return false
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	_, err := serving[0].Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	return err == nil
}

func decodeCerts(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return out, nil
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
}
