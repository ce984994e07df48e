#!/bin/sh
# Creates or updates each tenant's own MinIO user and policy from the files mounted beside this
# script (run by the minio-tenants Job with the root keys of the platform namespace). Running it
# again changes nothing: policies are replaced, users' keys set, attachments kept.
set -eu
export MC_CONFIG_DIR=/tmp/mc
# mc trusts the CAs in <config dir>/certs/CAs: the company CA that signed MinIO's certificate.
mkdir -p "$MC_CONFIG_DIR/certs/CAs"
cp /etc/kitchen/ca/tls-ca-bundle.pem "$MC_CONFIG_DIR/certs/CAs/company-ca.pem"
mc alias set kitchen "$KITCHEN_S3_ENDPOINT" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null
for policy in /etc/kitchen/policies/*.json; do
  tenant=$(basename "$policy" .json)
  access_key=$(cat "/etc/kitchen/tenants/$tenant-access-key")
  mc admin policy create kitchen "kitchen-tenant-$tenant" "$policy"
  mc admin user add kitchen "$access_key" "$(cat "/etc/kitchen/tenants/$tenant-secret-key")" >/dev/null
  if ! out=$(mc admin policy attach kitchen "kitchen-tenant-$tenant" --user "$access_key" 2>&1); then
    case "$out" in
      *"already in effect"*) ;;
      *) echo "$out" >&2; exit 1 ;;
    esac
  fi
  echo "tenant $tenant: user and policy kitchen-tenant-$tenant in place"
done
