// Command echo answers every HTTP request with the pod's name and the address the
// request came in on, on port 8080 of every interface (IPv4 and IPv6): the backend
// of the data-plane tests, built locally so that no image is pulled.
package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	name := os.Getenv("POD_NAME")
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		local := r.Context().Value(http.LocalAddrContextKey)
		fmt.Fprintf(w, "%s %v\n", name, local)
	})
	if err := http.ListenAndServe(":8080", nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
