package slbemu

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// StringToSign is the RPC (POP v1) canonical string the SDK signs: the method, "&%2F&",
// and the percent-encoded, key-sorted query of every parameter except Signature (empty
// values included).
func StringToSign(method string, params url.Values) string {
	v := url.Values{}
	for k, vals := range params {
		if k != "Signature" {
			v[k] = vals
		}
	}
	c := v.Encode()
	c = strings.ReplaceAll(c, "+", "%20")
	c = strings.ReplaceAll(c, "*", "%2A")
	c = strings.ReplaceAll(c, "%7E", "~")
	return method + "&%2F&" + url.QueryEscape(c)
}

// Sign returns the base64 HMAC-SHA1 of stringToSign keyed with secret + "&".
func Sign(stringToSign, secret string) string {
	m := hmac.New(sha1.New, []byte(secret+"&"))
	m.Write([]byte(stringToSign))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

const timestampLayout = "2006-01-02T15:04:05Z"

// authenticate checks the common parameters in the order the gateway does (format and
// version, action, key, timestamp, signature, nonce) and records the nonce.
func (s *Server) authenticate(r *http.Request, p url.Values) *apiError {
	if f := p.Get("Format"); f != "" && !strings.EqualFold(f, "JSON") {
		return invalidParam("Format", "the emulator answers Format=JSON only")
	}
	switch v := p.Get("Version"); {
	case v == "":
		return missingParam("Version")
	case v != APIVersion:
		return errf(http.StatusBadRequest, "InvalidVersion", "Specified parameter Version is not valid.")
	}
	action := p.Get("Action")
	if action == "" {
		return missingParam("Action")
	}
	if _, ok := actions[action]; !ok {
		return errf(http.StatusNotFound, "InvalidAction.NotFound", "Specified api is not found, please check your url and method.")
	}
	for _, name := range []string{"AccessKeyId", "SignatureMethod", "SignatureVersion", "SignatureNonce", "Timestamp"} {
		if p.Get(name) == "" {
			return missingParam(name)
		}
	}
	cred, ok := s.creds[p.Get("AccessKeyId")]
	if !ok {
		return errf(http.StatusNotFound, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
	}
	if m := p.Get("SignatureMethod"); m != "HMAC-SHA1" {
		return errf(http.StatusBadRequest, "InvalidSignatureMethod", "Specified signature method is not valid.")
	}
	if v := p.Get("SignatureVersion"); v != "1.0" {
		return errf(http.StatusBadRequest, "InvalidSignatureVersion", "Specified signature version is not valid.")
	}
	ts, err := time.Parse(timestampLayout, p.Get("Timestamp"))
	if err != nil {
		return errf(http.StatusBadRequest, "InvalidTimeStamp.Format", "Specified time stamp or date value is not well formatted.")
	}
	now := s.cfg.Now()
	if d := now.Sub(ts); d > s.cfg.TimestampSkew || d < -s.cfg.TimestampSkew {
		return errf(http.StatusBadRequest, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.")
	}
	sts := StringToSign(r.Method, p)
	got := p.Get("Signature")
	if got == "" {
		return errf(http.StatusBadRequest, "IncompleteSignature",
			"The request signature does not conform to Aliyun standards. server string to sign is:%s", sts)
	}
	want := Sign(sts, cred.AccessKeySecret)
	if subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		return errf(http.StatusBadRequest, "SignatureDoesNotMatch",
			"Specified signature is not matched with our calculation. server string to sign is:%s", sts)
	}
	if cred.SecurityToken != "" {
		switch tok := p.Get("SecurityToken"); {
		case tok == "":
			return missingParam("SecurityToken")
		case tok != cred.SecurityToken:
			return errf(http.StatusBadRequest, "InvalidSecurityToken.Mismatch", "Specified SecurityToken mismatch with the AccessKey.")
		}
	}
	if !s.nonces.use(p.Get("AccessKeyId")+"\x00"+p.Get("SignatureNonce"), now, s.cfg.TimestampSkew) {
		return errf(http.StatusBadRequest, "SignatureNonceUsed", "Specified signature nonce was used already.")
	}
	return nil
}

// nonceCache remembers nonces for the timestamp window: a request replayed later than
// that fails the timestamp check instead.
type nonceCache struct {
	mu        sync.Mutex
	seen      map[string]time.Time
	lastPrune time.Time
}

func (c *nonceCache) use(key string, now time.Time, ttl time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen == nil {
		c.seen = map[string]time.Time{}
	}
	if now.Sub(c.lastPrune) > ttl/4 {
		for k, t := range c.seen {
			if now.Sub(t) > ttl {
				delete(c.seen, k)
			}
		}
		c.lastPrune = now
	}
	if t, ok := c.seen[key]; ok && now.Sub(t) <= ttl {
		return false
	}
	c.seen[key] = now
	return true
}
