#!/bin/sh
# Makes the certificates tether's TLS tests use, with the openssl CLI, into DIR:
#   ca.pem/ca.key            a test CA (trusted by the tests through ca_file)
#   server.pem/server.key    localhost, 127.0.0.1 and ::1, signed by the CA (chain: leaf + nothing)
#   other.pem/other.key      names other.test and *.wild.test, signed by the CA (SNI tests)
#   expired.pem/expired.key  localhost, signed by the CA, valid only in January 2020
#   self.pem/self.key        localhost, self-signed (a CA nobody trusts)
#   client.pem/client.key    a client certificate, CN=client-one, signed by the CA
#   client2.pem/client2.key  another, CN=client-two
# Keys are P-256 (ECDSA), as the benchmarks' handshakes. Usage: make_test_ca.sh DIR
set -eu
dir=$1
mkdir -p "$dir"
cd "$dir"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

key ca.key
openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=tether test CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out ca.pem 2>/dev/null

# `openssl ca` signs with explicit validity dates (x509 -req cannot date a certificate in the past).
mkdir -p db
: > db/index.txt
echo 1000 > db/serial
cat > ca.cnf <<CNF
[ ca ]
default_ca = test
[ test ]
dir = $dir/db
database = $dir/db/index.txt
serial = $dir/db/serial
new_certs_dir = $dir/db
certificate = $dir/ca.pem
private_key = $dir/ca.key
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = copy
[ anything ]
commonName = supplied
[ server ]
basicConstraints = CA:FALSE
extendedKeyUsage = serverAuth
[ client ]
basicConstraints = CA:FALSE
extendedKeyUsage = clientAuth
CNF

# sign NAME CN SAN EXTENSIONS START END
sign() {
  key "$1.key"
  if [ -n "$3" ]; then
    openssl req -new -key "$1.key" -subj "/CN=$2" -addext "subjectAltName=$3" -out "$1.csr" 2>/dev/null
  else
    openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr" 2>/dev/null
  fi
  openssl ca -batch -config ca.cnf -extensions "$4" -startdate "$5" -enddate "$6" \
    -in "$1.csr" -out "$1.pem" -notext 2>/dev/null
  rm -f "$1.csr"
}
sign server localhost "DNS:localhost,IP:127.0.0.1,IP:::1" server 20250101000000Z 20451231000000Z
sign other other.test "DNS:other.test,DNS:*.wild.test" server 20250101000000Z 20451231000000Z
sign expired localhost "DNS:localhost,IP:127.0.0.1" server 20200101000000Z 20200131000000Z
sign client client-one "" client 20250101000000Z 20451231000000Z
sign client2 client-two "" client 20250101000000Z 20451231000000Z

key self.key
openssl req -x509 -new -key self.key -sha256 -days 3650 -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -out self.pem 2>/dev/null
chmod 600 ./*.key
