package slbemu_test

import (
	"errors"
	"fmt"
	"log"

	"github.com/aliyun/alibaba-cloud-sdk-go/sdk"
	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/auth/credentials"
	sdkerrors "github.com/aliyun/alibaba-cloud-sdk-go/sdk/errors"
	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/requests"
	"github.com/aliyun/alibaba-cloud-sdk-go/services/slb"

	"github.com/capstan-dev/capstan/sinks/slb/slbemu"
)

// An emulator with one load balancer, and the unmodified SDK client pointed at it.
func Example() {
	emu := slbemu.New(slbemu.Config{
		Credentials:   []slbemu.Credential{{AccessKeyID: "AKID", AccessKeySecret: "secret"}},
		LoadBalancers: []slbemu.LoadBalancer{{ID: "lb-demo", Region: "cn-hangzhou"}},
	})
	if err := emu.Start("127.0.0.1:0"); err != nil {
		log.Fatal(err)
	}
	defer emu.Close()

	cfg := sdk.NewConfig().WithScheme("HTTP").WithAutoRetry(false)
	client, err := slb.NewClientWithOptions("cn-hangzhou", cfg, credentials.NewStaticAKCredentialsProvider("AKID", "secret"))
	if err != nil {
		log.Fatal(err)
	}
	client.Domain = emu.Endpoint()

	create := slb.CreateCreateLoadBalancerTCPListenerRequest()
	create.LoadBalancerId, create.ListenerPort, create.BackendServerPort = "lb-demo", requests.NewInteger(80), requests.NewInteger(30080)
	if _, err := client.CreateLoadBalancerTCPListener(create); err != nil {
		log.Fatal(err)
	}
	list := slb.CreateDescribeLoadBalancerListenersRequest()
	list.LoadBalancerId = &[]string{"lb-demo"}
	resp, err := client.DescribeLoadBalancerListeners(list)
	if err != nil {
		log.Fatal(err)
	}
	for _, l := range resp.Listeners {
		fmt.Println(l.ListenerProtocol, l.ListenerPort, l.Status)
	}
	fmt.Println("writes:", emu.CountCalls(true))
	// Output:
	// tcp 80 stopped
	// writes: 1
}

// Injected faults answer like the real service; the SDK reports them as ServerErrors.
func ExampleServer_InjectFault() {
	emu := slbemu.New(slbemu.Config{
		Credentials:   []slbemu.Credential{{AccessKeyID: "AKID", AccessKeySecret: "secret"}},
		LoadBalancers: []slbemu.LoadBalancer{{ID: "lb-demo", Region: "cn-hangzhou"}},
	})
	if err := emu.Start("127.0.0.1:0"); err != nil {
		log.Fatal(err)
	}
	defer emu.Close()
	client, err := slb.NewClientWithOptions("cn-hangzhou", sdk.NewConfig().WithScheme("HTTP"),
		credentials.NewStaticAKCredentialsProvider("AKID", "secret"))
	if err != nil {
		log.Fatal(err)
	}
	client.Domain = emu.Endpoint()

	if err := emu.InjectFault(slbemu.Fault{Action: "DescribeLoadBalancers", Code: "Throttling", Count: 1}); err != nil {
		log.Fatal(err)
	}
	for range 2 {
		_, err := client.DescribeLoadBalancers(slb.CreateDescribeLoadBalancersRequest())
		var se *sdkerrors.ServerError
		if errors.As(err, &se) {
			fmt.Println(se.HttpStatus(), se.ErrorCode())
		} else {
			fmt.Println("ok", err)
		}
	}
	for _, c := range emu.Calls() {
		fmt.Println(c.Action, c.HTTPStatus, c.Code, c.Injected)
	}
	// Output:
	// 400 Throttling
	// ok <nil>
	// DescribeLoadBalancers 400 Throttling true
	// DescribeLoadBalancers 200  false
}
