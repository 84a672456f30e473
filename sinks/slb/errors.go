package slb

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	sdkerrors "github.com/aliyun/alibaba-cloud-sdk-go/sdk/errors"
)

// ErrAuth is wrapped by every error where SLB rejected capstan's credentials. Retrying
// cannot help; the message says which setting to check.
var ErrAuth = errors.New("SLB rejected the credentials")

// Error is one failed SLB API request.
type Error struct {
	Action string // the API action, e.g. CreateLoadBalancerHTTPListener
	// Code and HTTPStatus are SLB's answer ("" and 0 when the request never got one).
	Code       string
	HTTPStatus int
	Message    string
	RequestID  string
	// Err is the SDK's or the transport's error.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "slb %s: ", e.Action)
	switch {
	case e.Code != "":
		fmt.Fprintf(&b, "%s (HTTP %d)", e.Code, e.HTTPStatus)
		if e.Message != "" {
			b.WriteString(": " + e.Message)
		}
	case e.HTTPStatus != 0:
		fmt.Fprintf(&b, "HTTP %d", e.HTTPStatus)
		if e.Message != "" {
			b.WriteString(": " + e.Message)
		}
	default:
		b.WriteString(e.Message)
	}
	if hint := authHint(e.Code); hint != "" {
		b.WriteString("; " + hint)
	}
	if e.RequestID != "" {
		fmt.Fprintf(&b, " (request %s)", e.RequestID)
	}
	return b.String()
}

// Unwrap exposes ErrAuth for rejected credentials, and the underlying error.
func (e *Error) Unwrap() []error {
	if authHint(e.Code) != "" {
		return []error{ErrAuth, e.Err}
	}
	return []error{e.Err}
}

// authHint explains the codes SLB answers when it does not accept the credentials.
func authHint(code string) string {
	switch code {
	case "SignatureDoesNotMatch", "IncompleteSignature", "InvalidAccessKeySecret":
		return "the AccessKey secret does not match the AccessKey ID: check ALIBABA_CLOUD_ACCESS_KEY_SECRET (or its _FILE)"
	case "InvalidAccessKeyId.NotFound", "InvalidAccessKeyId", "InvalidAccessKeyId.Inactive":
		return "SLB does not know this AccessKey ID or it is disabled: check ALIBABA_CLOUD_ACCESS_KEY_ID (or its _FILE)"
	case "InvalidSecurityToken.Expired", "InvalidSecurityToken.Malformed", "InvalidSecurityToken.MismatchWithAccessKey":
		return "the STS security token is not valid: check ALIBABA_CLOUD_SECURITY_TOKEN"
	case "Forbidden.RAM", "Forbidden", "NoPermission":
		return "the RAM user or role lacks a permission capstan needs (docs/routes.md lists them)"
	}
	return ""
}

// wrapError turns an SDK or transport error into *Error.
func wrapError(action string, err error) error {
	e := &Error{Action: action, Err: err}
	var se *sdkerrors.ServerError
	var ce *sdkerrors.ClientError
	var ue *url.Error
	switch {
	case errors.As(err, &se):
		e.Code, e.HTTPStatus, e.RequestID = se.ErrorCode(), se.HttpStatus(), se.RequestId()
		// SLB appends the string it signed; it helps nobody reading capstan's output.
		msg, _, _ := strings.Cut(se.Message(), " server string to sign is:")
		e.Message = strings.TrimRight(strings.TrimSpace(msg), ".")
	case errors.As(err, &ue):
		// The URL holds the whole signed query; name the host only.
		host := ue.URL
		if u, perr := url.Parse(ue.URL); perr == nil {
			host = u.Scheme + "://" + u.Host
		}
		e.Message = fmt.Sprintf("%s %s: %v", ue.Op, host, ue.Err)
	case errors.As(err, &ce):
		e.Message = ce.ErrorCode() + ": " + ce.Message()
		if oe := ce.OriginError(); oe != nil {
			var inner *url.Error
			if errors.As(oe, &inner) {
				e.Message = ce.ErrorCode() + ": " + inner.Op + ": " + inner.Err.Error()
			}
		}
	default:
		e.Message = err.Error()
	}
	return e
}

// transientCodes are SLB answers that mean "try again later": rate limits, a load
// balancer or listener busy with an earlier change, and server-side failures.
var transientCodes = map[string]bool{
	"ServiceUnavailable":                       true,
	"InternalError":                            true,
	"SystemBusy":                               true,
	"OperationBusy":                            true,
	"ServiceIsConfiguring":                     true,
	"ServiceIsStopping":                        true,
	"BackendServer.configuring":                true,
	"OperationFailed.ListenerStatusNotSupport": true,
	"Operation.Deny":                           true,
	"Operation.Conflict":                       true,
	"ProcessingSameRequest":                    true,
	"SDK.TimeoutError":                         true,
}

// Transient reports whether err is worth retrying: throttling, *Busy, *Configuring and
// the other codes above, HTTP 5xx, and requests that got no answer (timeouts, refused
// connections). A write that got no answer may have been applied: callers re-read
// before repeating it.
func Transient(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	if authHint(e.Code) != "" {
		return false
	}
	code := e.Code
	switch {
	case transientCodes[code],
		strings.Contains(code, "Throttling"),
		strings.HasSuffix(code, "Busy"),
		strings.Contains(strings.ToLower(code), "configuring"),
		e.HTTPStatus >= 500:
		return true
	}
	// A certificate the client does not trust stays untrusted.
	var (
		verr *tls.CertificateVerificationError
		uerr x509.UnknownAuthorityError
		herr x509.HostnameError
		cerr x509.CertificateInvalidError
	)
	if errors.As(e.Err, &verr) || errors.As(e.Err, &uerr) || errors.As(e.Err, &herr) || errors.As(e.Err, &cerr) {
		return false
	}
	var ue *url.Error
	var ne net.Error
	if errors.As(e.Err, &ue) || errors.As(e.Err, &ne) {
		return true
	}
	var ce *sdkerrors.ClientError
	return errors.As(e.Err, &ce) && ce.ErrorCode() == sdkerrors.TimeoutErrorCode
}

// codeIs reports whether err is an SLB answer with one of codes.
func codeIs(err error, codes ...string) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	for _, c := range codes {
		if e.Code == c {
			return true
		}
	}
	return false
}

// notFound reports whether err says the listener or group addressed does not exist.
// SLB's codes for it vary by action; the message is stable.
func notFound(err error) bool {
	var e *Error
	if !errors.As(err, &e) || authHint(e.Code) != "" {
		return false
	}
	if strings.Contains(e.Code, "NotFound") || strings.Contains(e.Code, "NotExist") {
		return true
	}
	m := strings.ToLower(e.Message)
	return strings.Contains(m, "does not exist") || strings.Contains(m, "not exist") || strings.Contains(m, "not found")
}
