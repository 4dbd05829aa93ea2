// Command probe runs inside a test pod and checks, with full TLS verification, what Slipway's own
// pods need from the cluster: the API server through in-cluster configuration (the kubernetes
// Service VIP, the mounted service-account token and CA) and the registry with its CA.
//
//	probe REGISTRY_HOST:PORT REGISTRY_CA_FILE
//
// It exits non-zero on the first failure. (busybox wget cannot do this: its built-in TLS omits
// signature_algorithms, which Go 1.26 TLS servers require.)
package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

const saDir = "/var/run/secrets/kubernetes.io/serviceaccount"

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: probe REGISTRY_HOST:PORT REGISTRY_CA_FILE")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		os.Exit(1)
	}
}

func run(registry, registryCA string) error {
	token, err := os.ReadFile(saDir + "/token")
	if err != nil {
		return fmt.Errorf("service-account token: %w", err)
	}
	api := "https://" + net.JoinHostPort(os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")) + "/api"
	body, err := get(api, saDir+"/ca.crt", "Bearer "+string(token))
	if err != nil {
		return err
	}
	fmt.Printf("api %s: %s\n", api, body)
	body, err = get("https://"+registry+"/v2/", registryCA, "")
	if err != nil {
		return err
	}
	fmt.Printf("registry %s: %s\n", registry, body)
	return nil
}

func get(url, caFile, auth string) (string, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return "", fmt.Errorf("CA for %s: %w", url, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return "", fmt.Errorf("no certificate in %s", caFile)
	}
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
	}
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	return string(b), nil
}
