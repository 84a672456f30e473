// Package slbemu is a local, protocol-faithful emulator of Alibaba Cloud Server Load
// Balancer (Classic Load Balancer, RPC API version 2014-05-15). The unmodified
// github.com/aliyun/alibaba-cloud-sdk-go/services/slb client talks to it over HTTP, so
// capstan's SLB sink is tested against the wire protocol rather than a fake interface.
// cmd/slbemu runs it standalone; docs/slbemu.md describes that.
//
// # Use in a test
//
//	emu := slbemu.New(slbemu.Config{
//		Credentials:   []slbemu.Credential{{AccessKeyID: "AKID", AccessKeySecret: "secret"}},
//		LoadBalancers: []slbemu.LoadBalancer{{ID: "lb-1", Region: "cn-hangzhou"}},
//	})
//	if err := emu.Start("127.0.0.1:0"); err != nil { ... }
//	defer emu.Close()
//
//	cfg := sdk.NewConfig().WithScheme("HTTP").WithAutoRetry(false)
//	client, _ := slb.NewClientWithOptions("cn-hangzhou", cfg,
//		credentials.NewStaticAKCredentialsProvider("AKID", "secret"))
//	client.Domain = emu.Endpoint() // "127.0.0.1:PORT"
//
// Server is also an http.Handler (httptest.NewServer(emu) works; call emu.Close too,
// to stop forwarders).
//
// # Protocol
//
// Requests are POST or GET on "/", parameters in the query and/or a form body. The
// gateway checks come first, in this order, each with the real code and HTTP status:
// Format (JSON only), Version (InvalidVersion), Action (InvalidAction.NotFound, 404),
// AccessKeyId (InvalidAccessKeyId.NotFound, 404), SignatureMethod/Version, Timestamp
// (InvalidTimeStamp.Format / .Expired, ±Config.TimestampSkew), the HMAC-SHA1 signature
// over the SDK's canonical string (SignatureDoesNotMatch, message ending with "server
// string to sign is:<string>" as the SDK expects), SecurityToken for STS keys, and
// nonce reuse (SignatureNonceUsed). Then RegionId and the action's own parameters
// (MissingParameter, InvalidParameter with ranges and enums from the API reference);
// unknown parameters are ignored, as the real API does.
//
// Successful answers are JSON with RequestId (an upper-case UUID) and the action's keys
// exactly as the SDK's response structs decode them: legacy wrappers such as
// {"VServerGroups":{"VServerGroup":[...]}}, the plain Listeners array of
// DescribeLoadBalancerListeners, numbers for integer fields and strings for on/off and
// id fields. Errors are {"RequestId","HostId","Code","Message","Recommend"}, all strings.
//
// Implemented actions (Actions lists them): DescribeLoadBalancers,
// DescribeLoadBalancerAttribute, Add/Remove/SetBackendServers (default server group),
// DescribeLoadBalancerListeners (paged with MaxResults/NextToken),
// CreateLoadBalancer{HTTP,HTTPS,TCP,UDP}Listener, SetLoadBalancer{...}ListenerAttribute,
// DescribeLoadBalancer{...}ListenerAttribute, Start/Stop/DeleteLoadBalancerListener,
// CreateVServerGroup, DescribeVServerGroups, DescribeVServerGroupAttribute,
// Add/RemoveVServerGroupBackendServers, SetVServerGroupAttribute,
// ModifyVServerGroupBackendServers, DeleteVServerGroup, DescribeHealthStatus,
// TagResources, UntagResources, ListTagResources (load balancer tags only). Load
// balancers themselves come from Config.
//
// # Listener state machine
//
// Create leaves a listener stopped. Start: stopped → starting → running; Set*Attribute:
// → configuring → back to running or stopped; Stop: running → stopping → stopped.
// Transitions last Config.TransitionDelay and Config.TransitionCalls further API calls
// (both 0 by default: immediate). Calls that meet a transition fail as the real API
// does: Start while configuring → Operation.Deny, while stopping → ServiceIsStopping;
// Stop while starting → OperationFailed.ListenerStatusNotSupport, while configuring →
// ServiceIsConfiguring; Set or Delete while configuring → ServiceIsConfiguring, while
// starting/stopping → OperationFailed.ListenerStatusNotSupport. Start on a running
// listener and Stop on a stopped one succeed without effect. With
// Config.BackendPendingCalls, a backend change opens a window in which further backend
// changes on the same load balancer answer BackendServer.configuring.
//
// Other errors: ListenerAlreadyExists (tcp, http and https share a port space, udp has
// its own), TooManyListeners (Start/Stop/Delete without ListenerProtocol on a port
// used twice), RspoolVipExist (deleting a VServer group a listener uses),
// InvalidLoadBalancerId.NotFound (404, also for a load balancer of another region).
// Codes the reference leaves unconfirmed: an unknown listener answers InvalidParameter
// "The specified resource does not exist."; an unknown VServer group InvalidParameter
// "The specified VServerGroupId does not exist."; more than MaxListenersPerLB listeners
// QuotaExceeded.ListenersPerLoadBalancer; more than MaxBackendsPerLB backends (default
// group plus every VServer group) InstanceBackendServerNumberOverLimit; more than
// MaxBackendsPerCall entries in one BackendServers parameter InvalidParameter.
//
// # Call log and fault injection
//
// Every API request is logged (Calls, CountCalls, ResetCalls; GET/DELETE /_emu/calls):
// action, parameters without Signature, RequestId, HTTP status and Code, whether a
// fault touched it and whether the action is a write. InjectFault (POST /_emu/faults)
// fails or delays the next Count matching calls, or a deterministic share of them
// (Ratio), optionally for one Action only:
//
//	emu.InjectFault(slbemu.Fault{Code: "Throttling", Count: 3})
//	emu.InjectFault(slbemu.Fault{Action: "CreateVServerGroup", Code: "ServiceUnavailable", Ratio: 0.5})
//	emu.InjectFault(slbemu.Fault{Latency: 50 * time.Millisecond}) // every call, until ClearFaults
//
// Faults apply after authentication and a faulted call changes nothing.
//
// # Forwarding
//
// With Config.Forward, each serving tcp or http listener listens on
// <LoadBalancer.Address>:<ListenerPort> (Address defaults to Config.ForwardAddress,
// 127.0.0.1) and proxies to its server group — the VServer group named by
// VServerGroupId, else the default server group at BackendServerPort. A backend's
// ServerId maps to a host through Config.BackendAddresses (default
// Config.DefaultBackendHost, 127.0.0.1); eni/eci backends use their ServerIp. tcp
// listeners proxy bytes; http listeners are reverse proxies that keep the Host header
// and add X-Forwarded-For (XForwardedFor, on by default), X-Forwarded-Proto, SLB-IP,
// SLB-ID, X-Forwarded-Port and X-Forwarded-Client-Srcport per their switches. The
// scheduler picks among backends with weight > 0 that the health check found normal:
// wrr (smooth weighted round robin), rr, wlc (fewest active connections per weight),
// sch/tch/qch (hash of the client address). No healthy backend: http answers 503, tcp
// closes the connection.
//
// Health checks run per listener every HealthCheckInterval (Config.HealthCheckInterval
// overrides it for fast tests): TCP connect, or an HTTP GET (HEAD with
// HealthCheckMethod=head) of HealthCheckURI with HealthCheckDomain as Host, passing
// when the status class is in HealthCheckHttpCode. The first result decides; after
// that UnhealthyThreshold failures make a backend abnormal and HealthyThreshold
// successes normal again. DescribeHealthStatus reports what was seen: normal, abnormal,
// or unavailable (listener not serving, checks off, or not checked yet). Without
// forwarding (and for https/udp listeners, which are not forwarded) a serving listener
// with checks on reports normal; SetHealthStatus forces a value either way.
//
// Stopping or deleting a listener closes its port. ForwardAddr reports where a
// listener's forwarder listens, or why it could not bind.
package slbemu
