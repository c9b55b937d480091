/* The status of an API call: gRPC's codes, the same numbers on the wire (grpc-status) and in
 * netd's replies to hostd. */
#pragma once

/* gRPC's status codes (the same numbers on the wire, in grpc-status). */
enum api_code {
        API_OK = 0,
        API_CANCELLED = 1,
        API_UNKNOWN = 2,
        API_INVALID_ARGUMENT = 3,
        API_DEADLINE_EXCEEDED = 4,
        API_NOT_FOUND = 5,
        API_ALREADY_EXISTS = 6,
        API_PERMISSION_DENIED = 7,
        API_RESOURCE_EXHAUSTED = 8,
        API_FAILED_PRECONDITION = 9,
        API_ABORTED = 10,
        API_OUT_OF_RANGE = 11,
        API_UNIMPLEMENTED = 12,
        API_INTERNAL = 13,
        API_UNAVAILABLE = 14,
        API_DATA_LOSS = 15,
        API_UNAUTHENTICATED = 16,
};

/* "INVALID_ARGUMENT" for API_INVALID_ARGUMENT; "UNKNOWN" for a number out of range. */
const char *api_code_name(enum api_code code);
