package slbemu

import (
	"strconv"
	"strings"
)

// A fieldTable lists response keys with their JSON type, written as in the reference
// (slb-api.md Appendix A): "string: A B" / "int: C" / "bool: D" lines. Rendering from a
// listener's stored attributes emits only keys that have a value, with that type — so
// numbers are numbers and on/off flags strings, as the real API sends them.
type fieldTable []field

type field struct {
	name string
	typ  string // string | int | bool
}

func fields(text string) fieldTable {
	var t fieldTable
	typ := ""
	for line := range strings.SplitSeq(text, "\n") {
		names := line
		if p, rest, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			if p != "string" && p != "int" && p != "bool" {
				panic("slbemu: bad field type " + p)
			}
			typ, names = p, rest
		}
		for _, n := range strings.Fields(names) {
			if typ == "" {
				panic("slbemu: field " + n + " has no type")
			}
			t = append(t, field{name: n, typ: typ})
		}
	}
	return t
}

func (t fieldTable) render(attrs map[string]string, out map[string]any) {
	for _, f := range t {
		v, ok := attrs[f.name]
		if !ok || v == "" {
			continue
		}
		switch f.typ {
		case "string":
			out[f.name] = v
		case "int":
			if n, err := strconv.Atoi(v); err == nil {
				out[f.name] = n
			}
		case "bool":
			out[f.name] = v == "true" || v == "on"
		}
	}
}

// Listener attribute responses (Describe<Proto>ListenerAttribute), minus the keys the
// handler fills itself (RequestId, LoadBalancerId, ListenerPort, Status, wrappers).
var (
	httpAttrFields = fields(`
string: AclId AclStatus AclType Cookie Description Gzip HealthCheck HealthCheckDomain HealthCheckHttpCode
        HealthCheckHttpVersion HealthCheckMethod HealthCheckType HealthCheckURI ListenerForward
        Scheduler SecurityStatus ServiceManagedMode StickySession StickySessionType VServerGroupId VpcIds
        XForwardedFor XForwardedFor_ClientSrcPort XForwardedFor_SLBID XForwardedFor_SLBIP XForwardedFor_SLBPORT
        XForwardedFor_proto
int: BackendServerPort Bandwidth CookieTimeout ForwardCode ForwardPort HealthCheckConnectPort
     HealthCheckInterval HealthCheckTimeout HealthyThreshold IdleTimeout MaxConnection
     RequestTimeout UnhealthyThreshold`)

	httpsAttrFields = fields(`
string: AclId AclStatus AclType BackendProtocol CACertificateId Cookie Description EnableHttp2 Gzip
        HealthCheck HealthCheckDomain HealthCheckHttpCode HealthCheckHttpVersion HealthCheckMethod
        HealthCheckType HealthCheckURI Scheduler SecurityStatus ServerCertificateId
        ServiceManagedMode StickySession StickySessionType TLSCipherPolicy VServerGroupId VpcIds
        XForwardedFor XForwardedFor_ClientCertClientVerify XForwardedFor_ClientCertClientVerifyAlias
        XForwardedFor_ClientCertFingerprint XForwardedFor_ClientCertFingerprintAlias
        XForwardedFor_ClientCertIssuerDN XForwardedFor_ClientCertIssuerDNAlias
        XForwardedFor_ClientCertSubjectDN XForwardedFor_ClientCertSubjectDNAlias XForwardedFor_ClientSrcPort
        XForwardedFor_SLBID XForwardedFor_SLBIP XForwardedFor_SLBPORT XForwardedFor_proto
int: BackendServerPort Bandwidth CookieTimeout HealthCheckConnectPort HealthCheckInterval HealthCheckTimeout
     HealthyThreshold IdleTimeout MaxConnection RequestTimeout UnhealthyThreshold`)

	tcpAttrFields = fields(`
string: AclId AclStatus AclType ConnectionDrain Description FailoverStrategy HealthCheck HealthCheckDomain
        HealthCheckHttpCode HealthCheckMethod HealthCheckType HealthCheckURI
        MasterServerGroupId MasterSlaveServerGroupId Scheduler ServiceManagedMode
        SlaveServerGroupId SynProxy VServerGroupId VpcIds
int: BackendServerPort Bandwidth ConnectionDrainTimeout EstablishedTimeout FailoverThreshold
     HealthCheckConnectPort HealthCheckConnectTimeout HealthCheckInterval HealthyThreshold
     MaxConnection PersistenceTimeout UnhealthyThreshold
bool: FullNatEnabled HealthCheckTcpFastCloseEnabled MasterSlaveModeEnabled ProxyProtocolV2Enabled`)

	udpAttrFields = fields(`
string: AclId AclStatus AclType ConnectionDrain Description FailoverStrategy HealthCheck HealthCheckDomain
        HealthCheckExp HealthCheckHttpCode HealthCheckMethod HealthCheckReq HealthCheckSwitch
        HealthCheckType HealthCheckURI MasterServerGroupId MasterSlaveServerGroupId
        QuicVersion Scheduler ServiceManagedMode SlaveServerGroupId VServerGroupId VpcIds
int: BackendServerPort Bandwidth ConnectionDrainTimeout FailoverThreshold HealthCheckConnectPort
     HealthCheckConnectTimeout HealthCheckInterval HealthyThreshold MaxConnection
     PersistenceTimeout UnhealthyThreshold
bool: FullNatEnabled MasterSlaveModeEnabled ProxyProtocolV2Enabled`)
)

// DescribeLoadBalancerListeners: the common part of each entry and the per-protocol
// config objects. Note FullNatEnabled and ProxyProtocolV2Enabled are strings here but
// booleans in the attribute responses; that is the real API.
var (
	listenerFields = fields(`
string: AclId AclStatus AclType BackendProtocol Description Scheduler ServiceManagedMode VServerGroupId
int: BackendServerPort Bandwidth`)

	httpConfigFields = fields(`
string: Cookie Gzip HealthCheck HealthCheckDomain HealthCheckHttpCode HealthCheckHttpVersion
        HealthCheckMethod HealthCheckType HealthCheckURI ListenerForward StickySession
        StickySessionType XForwardedFor XForwardedFor_ClientSrcPort XForwardedFor_SLBID
        XForwardedFor_SLBIP XForwardedFor_SLBPORT XForwardedFor_proto
int: CookieTimeout ForwardCode ForwardPort HealthCheckConnectPort HealthCheckInterval
     HealthCheckTimeout HealthyThreshold IdleTimeout MaxConnection RequestTimeout UnhealthyThreshold`)

	httpsConfigFields = fields(`
string: CACertificateId Cookie EnableHttp2 Gzip HealthCheck HealthCheckDomain HealthCheckHttpCode
        HealthCheckHttpVersion HealthCheckMethod HealthCheckType HealthCheckURI ServerCertificateId
        StickySession StickySessionType TLSCipherPolicy XForwardedFor
        XForwardedFor_ClientCertClientVerify XForwardedFor_ClientCertClientVerifyAlias
        XForwardedFor_ClientCertFingerprint XForwardedFor_ClientCertFingerprintAlias
        XForwardedFor_ClientCertIssuerDN XForwardedFor_ClientCertIssuerDNAlias
        XForwardedFor_ClientCertSubjectDN XForwardedFor_ClientCertSubjectDNAlias
        XForwardedFor_ClientSrcPort XForwardedFor_SLBID XForwardedFor_SLBIP XForwardedFor_SLBPORT
        XForwardedFor_proto
int: CookieTimeout HealthCheckConnectPort HealthCheckInterval HealthCheckTimeout HealthyThreshold
     IdleTimeout MaxConnection RequestTimeout UnhealthyThreshold`)

	tcpConfigFields = fields(`
string: ConnectionDrain FailoverStrategy FullNatEnabled HealthCheck HealthCheckDomain
        HealthCheckHttpCode HealthCheckMethod HealthCheckSwitch HealthCheckType HealthCheckURI
        MasterServerGroupId MasterSlaveServerGroupId ProxyProtocolV2Enabled SlaveServerGroupId
int: ConnectionDrainTimeout EstablishedTimeout FailoverThreshold HealthCheckConnectPort
     HealthCheckConnectTimeout HealthCheckInterval HealthyThreshold MaxConnection PersistenceTimeout
     UnhealthyThreshold
bool: HealthCheckTcpFastCloseEnabled MasterSlaveModeEnabled`)

	udpConfigFields = fields(`
string: ConnectionDrain FailoverStrategy FullNatEnabled HealthCheck HealthCheckDomain HealthCheckExp
        HealthCheckHttpCode HealthCheckMethod HealthCheckReq HealthCheckSwitch HealthCheckType
        HealthCheckURI MasterServerGroupId MasterSlaveServerGroupId ProxyProtocolV2Enabled
        QuicVersion SlaveServerGroupId
int: ConnectionDrainTimeout FailoverThreshold HealthCheckConnectPort HealthCheckConnectTimeout
     HealthCheckInterval HealthyThreshold MaxConnection PersistenceTimeout UnhealthyThreshold
bool: MasterSlaveModeEnabled`)
)
