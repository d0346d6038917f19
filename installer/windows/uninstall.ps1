<#
.SYNOPSIS
    Remove the dropbox-sync Windows service and its venv.

.DESCRIPTION
    Stops the service (the current upload gets its stop_timeout to finish), unregisters it with
    'dropbox-sync service uninstall', then deletes the venv. The config, the journal, the logs and every
    inbox folder are kept unless -RemoveData is given; inbox folders and the processed\ and failed\ files in
    them are never deleted. Safe to run again. -WhatIf shows what would be done and changes nothing.

.PARAMETER Root
    The folder install.ps1 used. Default: C:\ProgramData\dropbox-sync.
.PARAMETER Config
    The config file the service reads. Default: <Root>\config.toml.
.PARAMETER Name
    The service name. Default: dropbox-sync.
.PARAMETER RemoveData
    Also delete the config file, the journal and dropbox-sync's own log files.

.EXAMPLE
    powershell -ExecutionPolicy Bypass -File .\installer\windows\uninstall.ps1
.EXAMPLE
    .\installer\windows\uninstall.ps1 -RemoveData -WhatIf
#>
[CmdletBinding(SupportsShouldProcess = $true)]
param(
    [string]$Root = (Join-Path $env:ProgramData 'dropbox-sync'),
    [string]$Config = '',
    [string]$Name = 'dropbox-sync',
    [switch]$RemoveData
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$identity = [Security.Principal.WindowsIdentity]::GetCurrent()
if (-not ([Security.Principal.WindowsPrincipal]$identity).IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
    throw 'Run this from PowerShell opened with "Run as administrator".'
}
if (-not $Config) { $Config = Join-Path $Root 'config.toml' }
$venv = Join-Path $Root 'venv'
$dropboxSync = Join-Path $venv 'Scripts\dropbox-sync.exe'

if (Test-Path -LiteralPath $dropboxSync) {
    $uninstallArgs = @('--config', $Config, 'service', 'uninstall', '--name', $Name)
    if ($RemoveData) { $uninstallArgs += '--remove-data' }
    if ($PSCmdlet.ShouldProcess($Name, 'Stop and unregister the service' + $(if ($RemoveData) { ', delete config, journal and logs' } else { '' }))) {
        & $dropboxSync @uninstallArgs
        if ($LASTEXITCODE -ne 0) { throw "'dropbox-sync service uninstall' failed with exit code $LASTEXITCODE" }
    }
} elseif (Get-Service -Name $Name -ErrorAction SilentlyContinue) {
    # The venv is already gone: unregister with the tools Windows has.
    if ($PSCmdlet.ShouldProcess($Name, 'Stop and unregister the service (sc.exe)')) {
        Stop-Service -Name $Name -ErrorAction SilentlyContinue
        & sc.exe delete $Name
        if ($LASTEXITCODE -ne 0) { throw "'sc.exe delete $Name' failed with exit code $LASTEXITCODE" }
    }
} else {
    Write-Host "Service $Name is not installed."
}

if (Test-Path -LiteralPath $venv) {
    if ($PSCmdlet.ShouldProcess($venv, 'Delete the venv')) {
        # The service host may take a moment to exit after reporting STOPPED and still hold its files.
        for ($try = 1; ; $try++) {
            try { Remove-Item -LiteralPath $venv -Recurse -Force; break }
            catch { if ($try -ge 10) { throw }; Start-Sleep -Seconds 1 }
        }
    }
}
if ($RemoveData -and (Test-Path -LiteralPath $Root)) {
    if (-not (Get-ChildItem -LiteralPath $Root -Force)) {
        if ($PSCmdlet.ShouldProcess($Root, 'Delete the now empty folder')) { Remove-Item -LiteralPath $Root -Force }
    } else {
        Write-Host "Kept $Root : it still holds files dropbox-sync did not write."
    }
}
Write-Host "Removed service $Name. Inbox folders were not touched."
