<#
.SYNOPSIS
    Install (or upgrade) dropbox-sync as a Windows service.

.DESCRIPTION
    1. Checks that this is an administrator prompt and that Python 3.11+ is installed.
    2. Creates a venv in C:\ProgramData\dropbox-sync\venv (once) and installs dropbox-sync into it with pip.
    3. Writes C:\ProgramData\dropbox-sync\config.toml with 'dropbox-sync init' if there is no config yet.
    4. Runs 'dropbox-sync service install' (registers the service, LocalService account, automatic start,
       restart on failure, rights on its folders) and 'dropbox-sync service start'.

    Safe to run again: an upgrade stops the service, reinstalls the package, re-registers and starts it.
    The logic lives in Python ('dropbox-sync service ...'); this script only finds Python and makes the venv.
    -WhatIf shows what would be done and changes nothing.

.PARAMETER Source
    What pip installs: this source tree (default), a wheel file, or the name 'dropbox-sync'.
.PARAMETER PipArgs
    Extra pip arguments, e.g. '--no-index','--find-links','D:\wheels' on a server without internet.
.PARAMETER Python
    The python.exe (3.11+) to build the venv with. Default: the 'py' launcher's newest Python 3, else python.exe.
.PARAMETER Root
    The folder for the venv and the config. Default: C:\ProgramData\dropbox-sync.
.PARAMETER Config
    The config file the service reads. Default: <Root>\config.toml.
.PARAMETER Name
    The service name. Default: dropbox-sync. Several instances (one per config) need different names.
.PARAMETER Account
    The account the service runs as. Default: NT AUTHORITY\LocalService. For inboxes on a network share use a
    domain account (SCHOOL\svc-dropbox, you are asked for its password) or a managed one (SCHOOL\gmsa-dropbox$).
.PARAMETER Password
    The password of -Account, as a SecureString (you are prompted when it is needed and not given).
.PARAMETER NoStart
    Install but do not start the service (e.g. to edit the config first).

.EXAMPLE
    powershell -ExecutionPolicy Bypass -File .\installer\windows\install.ps1
.EXAMPLE
    .\installer\windows\install.ps1 -Account 'SCHOOL\svc-dropbox' -NoStart -WhatIf
#>
[CmdletBinding(SupportsShouldProcess = $true)]
param(
    [string]$Source = (Join-Path $PSScriptRoot '..\..'),
    [string[]]$PipArgs = @(),
    [string]$Python = '',
    [string]$Root = (Join-Path $env:ProgramData 'dropbox-sync'),
    [string]$Config = '',
    [string]$Name = 'dropbox-sync',
    [string]$Account = '',
    [SecureString]$Password,
    [switch]$NoStart
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

function Test-Administrator {
    $identity = [Security.Principal.WindowsIdentity]::GetCurrent()
    return ([Security.Principal.WindowsPrincipal]$identity).IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)
}

function Invoke-Native {
    # Run a program; stop the script if it fails (native programs do not throw).
    param([string]$Exe, [string[]]$Arguments)
    & $Exe @Arguments
    if ($LASTEXITCODE -ne 0) { throw "'$Exe $($Arguments -join ' ')' failed with exit code $LASTEXITCODE" }
}

function Find-Python {
    if ($Python) { return $Python }
    if (Get-Command py.exe -ErrorAction SilentlyContinue) {
        $found = & py.exe -3 -c 'import sys; print(sys.executable)'
        if ($LASTEXITCODE -eq 0 -and $found) { return "$found".Trim() }
    }
    $command = Get-Command python.exe -ErrorAction SilentlyContinue
    if ($command) { return $command.Source }
    throw 'Python 3.11 or newer was not found: install it from python.org, "Install for all users", then run this again.'
}

if (-not (Test-Administrator)) {
    throw 'Run this from PowerShell opened with "Run as administrator".'
}
if (-not $Config) { $Config = Join-Path $Root 'config.toml' }
# A folder or wheel becomes an absolute path (pip runs from elsewhere); a package name stays as it is.
# (No '??': this must run on Windows PowerShell 5.1 as shipped with Windows Server.)
$resolved = Resolve-Path -LiteralPath $Source -ErrorAction SilentlyContinue
if ($resolved) { $Source = $resolved.Path }
$pythonExe = Find-Python
& $pythonExe -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'
if ($LASTEXITCODE -ne 0) { throw "$pythonExe is older than Python 3.11: install 3.11 or newer." }

$venv = Join-Path $Root 'venv'
$venvPython = Join-Path $venv 'Scripts\python.exe'
$dropboxSync = Join-Path $venv 'Scripts\dropbox-sync.exe'

# An upgrade: the running service holds the venv's files open, so stop it first.
$existing = Get-Service -Name $Name -ErrorAction SilentlyContinue
if ($existing -and $existing.Status -ne 'Stopped' -and (Test-Path -LiteralPath $dropboxSync)) {
    if ($PSCmdlet.ShouldProcess($Name, 'Stop the running service for the upgrade')) {
        Invoke-Native $dropboxSync @('--config', $Config, 'service', 'stop', '--name', $Name)
    }
}

if (-not (Test-Path -LiteralPath $venvPython)) {
    if ($PSCmdlet.ShouldProcess($venv, "Create a venv with $pythonExe")) {
        Invoke-Native $pythonExe @('-m', 'venv', $venv)
    }
}
if ($PSCmdlet.ShouldProcess($venv, "pip install $Source")) {
    # -I: pip sees only the venv, whatever PYTHONPATH this session has.
    Invoke-Native $venvPython (@('-I', '-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', '--upgrade') + $PipArgs + @("$Source"))
}

if (-not (Test-Path -LiteralPath $Config)) {
    if ($PSCmdlet.ShouldProcess($Config, 'Write a commented config (dropbox-sync init)')) {
        Invoke-Native $dropboxSync @('--config', $Config, 'init')
    }
}

$installArgs = @('--config', $Config, 'service', 'install', '--name', $Name)
if ($Account) { $installArgs += @('--account', $Account) }
if ($PSCmdlet.ShouldProcess($Name, "Install the Windows service (account: $(if ($Account) { $Account } else { 'NT AUTHORITY\LocalService' }))")) {
    $builtIn = (-not $Account) -or ($Account -match '^(NT AUTHORITY\\(LocalService|Local Service|NetworkService|Network Service|System)|LocalSystem)$') -or $Account.EndsWith('$')
    if (-not $builtIn) {
        if (-not $Password) { $Password = Read-Host -AsSecureString "Password for $Account" }
        # Handed over on standard input, never on a command line other users could see.
        $bstr = [Runtime.InteropServices.Marshal]::SecureStringToBSTR($Password)
        try {
            $plain = [Runtime.InteropServices.Marshal]::PtrToStringBSTR($bstr)
            $plain | & $dropboxSync @($installArgs + @('--password', '-'))
        } finally {
            [Runtime.InteropServices.Marshal]::ZeroFreeBSTR($bstr)
        }
        if ($LASTEXITCODE -ne 0) { throw "'dropbox-sync service install' failed with exit code $LASTEXITCODE" }
    } else {
        Invoke-Native $dropboxSync $installArgs
    }
}

if (-not $NoStart) {
    if ($PSCmdlet.ShouldProcess($Name, 'Start the service')) {
        Invoke-Native $dropboxSync @('--config', $Config, 'service', 'start', '--name', $Name)
    }
}
Write-Host "Done. Edit $Config, then check it with: & '$dropboxSync' --config '$Config' check --online"
Write-Host "Logs: $(Join-Path $Root 'Logs') and the Application Event Log (source $Name)."
