package slbemu

import (
	"fmt"
	"net/http"
)

// apiError is an error answer: HTTP status, Code and Message as the real API sends them.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func errf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

func missingParam(name string) *apiError {
	return errf(http.StatusBadRequest, "MissingParameter",
		"The input parameter %q that is mandatory for processing this request is not supplied.", name)
}

func invalidParam(name, why string) *apiError {
	return errf(http.StatusBadRequest, "InvalidParameter",
		"The specified parameter %q is not valid: %s", name, why)
}

func lbNotFound() *apiError {
	return errf(http.StatusNotFound, "InvalidLoadBalancerId.NotFound", "The specified Load Balancer does not exist.")
}

// The real code of an unknown listener is not documented; Terraform matches the message.
func listenerNotFound() *apiError {
	return errf(http.StatusBadRequest, "InvalidParameter", "The specified resource does not exist.")
}

// Terraform matches both the code and this message.
func vgroupNotFound() *apiError {
	return errf(http.StatusBadRequest, "InvalidParameter", "The specified VServerGroupId does not exist.")
}

func statusNotSupport() *apiError {
	return errf(http.StatusBadRequest, "OperationFailed.ListenerStatusNotSupport",
		"The status of the listener does not support this operation. Please try again later.")
}

func serviceIsConfiguring() *apiError {
	return errf(http.StatusBadRequest, "ServiceIsConfiguring",
		"A previous configuration of the load balancer is pending, please try again later.")
}

func serviceIsStopping() *apiError {
	return errf(http.StatusBadRequest, "ServiceIsStopping", "The specified listener is stopping, please try again later.")
}

func operationDeny() *apiError {
	return errf(http.StatusBadRequest, "Operation.Deny", "The specified listener is configuring, please try again later.")
}

func backendConfiguring() *apiError {
	return errf(http.StatusBadRequest, "BackendServer.configuring",
		"A previous configuration of the load balancer is pending; please try again later.")
}

// Gateway errors that fault injection may produce, with their real status and message.
var knownFaults = map[string]apiError{
	"Throttling":         {http.StatusBadRequest, "Throttling", "Request was denied due to request throttling."},
	"Throttling.User":    {http.StatusBadRequest, "Throttling.User", "Request was denied due to user flow control."},
	"Throttling.Api":     {http.StatusBadRequest, "Throttling.Api", "Request was denied due to api flow control."},
	"ServiceUnavailable": {http.StatusServiceUnavailable, "ServiceUnavailable", "The request has failed due to a temporary failure of the server."},
	"InternalError":      {http.StatusInternalServerError, "InternalError", "The request processing has failed due to some unknown error."},
	"SystemBusy":         {http.StatusBadRequest, "SystemBusy", "System is busy, please try again later."},
	"OperationBusy":      {http.StatusBadRequest, "OperationBusy", "The operation is busy, please try again later."},
	"BackendServer.configuring": {http.StatusBadRequest, "BackendServer.configuring",
		"A previous configuration of the load balancer is pending; please try again later."},
	"ServiceIsConfiguring": {http.StatusBadRequest, "ServiceIsConfiguring",
		"A previous configuration of the load balancer is pending, please try again later."},
}
